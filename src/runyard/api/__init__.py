"""The REST API: thin routers over the services, one error mapping, bearer-token auth."""
