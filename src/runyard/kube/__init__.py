"""What every part of runyard on Kubernetes shares: the API client and its errors, the CRDs generated from
the resource models, and the install's manifests (CLI, store backend, runtime and operator build on it)."""
