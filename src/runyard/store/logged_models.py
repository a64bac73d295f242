"""MLflow 3 logged models and run outputs, kept beside the tracking tables.

A part of its own over the Store's connections (not mixed into Store): only the logged-model service
uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from runyard.store.base import StoreBase
from runyard.store.tables import LoggedModelMetricRow, LoggedModelOutputRow, LoggedModelRow


class LoggedModelStore:
    def __init__(self, store: StoreBase):
        self.store = store

    def add(self, row: LoggedModelRow) -> LoggedModelRow:
        with self.store.write() as s:
            s.add(row)
        return row

    def get(self, model_id: str) -> LoggedModelRow | None:
        with self.store.read() as s:
            return s.get(LoggedModelRow, model_id)

    def change(self, model_id: str, edit: Callable[[LoggedModelRow], None]) -> LoggedModelRow | None:
        """Apply `edit` to the model's row in one transaction; the row after, or None if there is none."""
        with self.store.write() as s:
            row = s.get(LoggedModelRow, model_id, with_for_update=True)
            if row is not None:
                edit(row)
        return row

    def in_experiments(self, experiment_ids: Iterable[int]) -> list[LoggedModelRow]:
        """Every model of these experiments, newest first (deleted ones included)."""
        query = (
            select(LoggedModelRow)
            .where(LoggedModelRow.experiment_id.in_(list(experiment_ids)))
            .order_by(LoggedModelRow.creation_timestamp_ms.desc(), LoggedModelRow.model_id)
        )
        with self.store.read() as s:
            return list(s.scalars(query))

    def add_outputs(self, run_id: str, outputs: Iterable[tuple[str, int]]) -> None:
        """Record that the run produced these models, at these steps; recording one again is harmless."""
        rows = [{"run_id": run_id, "model_id": m, "step": step} for m, step in outputs]
        if not rows:
            return
        insert = sqlite_insert if self.store.is_sqlite else pg_insert
        stmt = insert(LoggedModelOutputRow).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "model_id"], set_={"step": stmt.excluded.step}
        )
        with self.store.connect(write=True) as conn:
            conn.execute(stmt)

    def outputs(self, run_id: str) -> list[tuple[str, int]]:
        query = select(LoggedModelOutputRow.model_id, LoggedModelOutputRow.step).where(
            LoggedModelOutputRow.run_id == run_id
        )
        with self.store.connect() as conn:
            return [(r.model_id, r.step) for r in conn.execute(query)]

    def link_metrics(self, rows: list[dict]) -> None:
        """Keep each (model, key, dataset)'s latest point, by step then timestamp: the newest of `rows`
        (full LoggedModelMetricRow dicts), unless a later one is stored already."""
        latest: dict[tuple, dict] = {}
        for r in rows:
            pk = (r["model_id"], r["key"], r["dataset_name"], r["dataset_digest"])
            kept = latest.get(pk)
            if kept is None or (r["step"], r["timestamp"]) >= (kept["step"], kept["timestamp"]):
                latest[pk] = r
        if not latest:
            return
        insert = sqlite_insert if self.store.is_sqlite else pg_insert
        stmt = insert(LoggedModelMetricRow).values(list(latest.values()))
        new, old = stmt.excluded, LoggedModelMetricRow
        stmt = stmt.on_conflict_do_update(
            index_elements=["model_id", "key", "dataset_name", "dataset_digest"],
            set_={c: getattr(new, c) for c in ("value", "step", "timestamp", "run_id")},
            where=or_(new.step > old.step, and_(new.step == old.step, new.timestamp >= old.timestamp)),
        )
        with self.store.connect(write=True) as conn:
            conn.execute(stmt)

    def metrics(self, model_ids: Iterable[str]) -> dict[str, list[LoggedModelMetricRow]]:
        """Each model's latest metrics, by key."""
        query = (
            select(LoggedModelMetricRow)
            .where(LoggedModelMetricRow.model_id.in_(list(model_ids)))
            .order_by(LoggedModelMetricRow.key, LoggedModelMetricRow.dataset_name)
        )
        out: dict[str, list[LoggedModelMetricRow]] = {}
        with self.store.read() as s:
            for row in s.scalars(query):
                out.setdefault(row.model_id, []).append(row)
        return out
