"""Run artifacts under an artifact root: a local directory or any fsspec URL (filled in by issue 6)."""

from __future__ import annotations


class ArtifactStore:
    def __init__(self, root: str, max_bytes: int):
        self.root = root
        self.max_bytes = max_bytes
