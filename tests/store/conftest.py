"""The Store opened on each test's store URL (SQLite, and a fresh PostgreSQL database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runyard.store import Store


@pytest.fixture
def store(store_url) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()
