"""The kubernetes runtime: a Run's attempt as a Pod (a Model as a Deployment and Service, a Session as a Pod
and Service)."""
