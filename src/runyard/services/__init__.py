"""Use cases, one module per area: routers call these; these call the store and the runtime."""
