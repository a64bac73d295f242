"""The operator: the controller on a cluster, acting only while it holds the leader Lease."""
