"""The operator's entry point (placeholder until the Kubernetes work lands)."""


def main() -> None:
    raise SystemExit("not built yet")
