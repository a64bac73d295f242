"""The store backend over the Kubernetes API: runyard's resources as custom resources, a project as a
namespace, resourceVersion and watch as Kubernetes' own."""
