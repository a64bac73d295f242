"""Metric points: written and read on the hot paths of tracking, through the database driver.

A training loop logs points one call after another, or a thousand at a time; a reader asks for a whole
history of up to millions of points. Both go past SQLAlchemy (its layers cost more than the SQL): points
in by the driver's executemany (or, on PostgreSQL, one statement for a few), on connections kept for
them; histories out of the metrics index alone, which covers them.
"""

from __future__ import annotations

import builtins
import json
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import psycopg
from sqlalchemy import Row, Table, select
from sqlalchemy.exc import OperationalError

from runyard.store.base import StoreBase
from runyard.store.tables import TrackingLatestMetricRow

if TYPE_CHECKING:
    from runyard.store.tracking import RunRef

LATEST = cast(Table, TrackingLatestMetricRow.__table__)
MAX_SPARES = 4  # PostgreSQL connections kept for metric writes
FEW_POINTS = 20  # PostgreSQL: up to this many points a write is one statement
CHECKPOINT_PAGES = 10_000  # SQLite: see _write_points
MAX_DOUBLE = 1.7976931348623157e308  # what MLflow stores for +-infinity

# A metric point as stored: (key, step, timestamp, value, is_nan); see `point`.
Point = tuple[str, int, int, float, bool]
POINT_COLUMNS = 'key, step, "timestamp", value, is_nan, run_id'
# The latest point of a key is replaced by one of a later step, then timestamp, then a larger value (MLflow's
# order); its count of points grows by the batch's count either way.
_NEWER = (
    '(excluded.step, excluded."timestamp", excluded.value) > '
    '(tracking_latest_metrics.step, tracking_latest_metrics."timestamp", tracking_latest_metrics.value)'
)
LATEST_UPSERT = "ON CONFLICT (run_id, key) DO UPDATE SET " + ", ".join(
    ["points = tracking_latest_metrics.points + excluded.points"]
    + [
        f"{col} = CASE WHEN {_NEWER} THEN excluded.{col} ELSE tracking_latest_metrics.{col} END"
        for col in ("step", '"timestamp"', "value", "is_nan")
    ]
)


def point(key: str, value: float, timestamp: int, step: int) -> Point:
    """A point as stored: NaN as 0 with its flag (SQLite reads NaN back as NULL), +-inf as the largest
    double of its sign, as MLflow stores them."""
    if value != value:
        return key, step, timestamp, 0.0, True
    if math.isinf(value):
        return key, step, timestamp, (MAX_DOUBLE if value > 0 else -MAX_DOUBLE), False
    return key, step, timestamp, value, False


class MetricPoints(StoreBase):
    def __init__(self, url: str, migrate: bool = True):
        super().__init__(url, migrate)
        self._points_conn: Any = None  # SQLite: see _write_points
        self._spares: list[Any] = []  # PostgreSQL: see _write_points_pg
        self._spares_lock = threading.Lock()

    def _insert_points(self, cursor: Any, pk: int, points: Sequence[Point], latest: list[tuple]) -> None:
        """Points by the driver's executemany, the run's key written into the statement (an int) so that
        each row is only what was logged; on PostgreSQL, more than a few by COPY, three times as fast
        as inserting them here. Then the latest value of each key."""
        mark = "?" if self.is_sqlite else "%s"
        values = f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {int(pk)}"
        if self.is_sqlite or len(points) <= FEW_POINTS:
            cursor.executemany(f"INSERT INTO tracking_metrics ({POINT_COLUMNS}) {values})", points)
        else:
            with cursor.copy(f"COPY tracking_metrics ({POINT_COLUMNS}) FROM STDIN") as copy:
                for p in points:
                    copy.write_row((*p, pk))
        upsert = (
            f"INSERT INTO tracking_latest_metrics ({POINT_COLUMNS}, points) {values}, {mark}) {LATEST_UPSERT}"
        )
        cursor.executemany(upsert, latest)

    def _write_points(self, pk: int, points: Sequence[Point], latest: list[tuple]) -> None:
        """SQLite, metrics alone (a training loop's calls): on a connection kept for it, without the
        pool and the SQLAlchemy layers, which cost more than the insert. Writers still queue on the
        one writer lock.

        This connection checkpoints the WAL every CHECKPOINT_PAGES pages rather than SQLite's 1,000: a
        loop's commits rewrite the same few pages, each copied once a checkpoint, and each checkpoint
        waits for the disk; commits took half the time. Durability stays SQLite's synchronous=NORMAL:
        a power cut may take what the OS has not written back yet (seconds of metrics), never more at a
        low rate, and never anything on a crash of the process."""
        with self._writer:
            if self._points_conn is None:
                self._points_conn = self.engine.raw_connection()
                self._points_conn.driver_connection.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
            cursor = self._points_conn.driver_connection.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    self._insert_points(cursor, pk, points, latest)
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
            finally:
                cursor.close()

    def _write_points_pg(self, pk: int, points: Sequence[Point], latest: list[tuple]) -> None:
        """PostgreSQL, metrics alone, on a connection of our own that commits without waiting for the WAL
        flush (see log_data). A few points go in one statement (the latest values in its WITH): one
        round trip. More go by COPY in one transaction (a statement of a thousand rows of parameters
        took PostgreSQL longer to parse than that). A connection found broken is replaced and the write
        tried once more."""
        for attempt in range(2):
            conn = self._spare_pg()
            try:
                if len(points) <= FEW_POINTS:
                    conn.execute(*self._points_statement(pk, points, latest))
                else:
                    with conn.transaction():
                        self._insert_points(conn.cursor(), pk, points, latest)
            except psycopg.OperationalError as exc:
                conn.close()
                if attempt:
                    raise OperationalError("write metric points", None, exc) from exc
                continue
            self._return_pg(conn)
            return

    @staticmethod
    def _points_statement(pk: int, points: Sequence[Point], latest: list[tuple]) -> tuple[str, list]:
        row = "(%s, %s, %s, %s, %s, " + str(int(pk))
        sql = (
            f"WITH added AS (INSERT INTO tracking_metrics ({POINT_COLUMNS}) VALUES "
            + ", ".join([row + ")"] * len(points))
            + f") INSERT INTO tracking_latest_metrics ({POINT_COLUMNS}, points) VALUES "
            + ", ".join([row + ", %s)"] * len(latest))
            + " "
            + LATEST_UPSERT
        )
        return sql, [v for p in points for v in p] + [v for p in latest for v in p]

    def _spare_pg(self) -> Any:
        with self._spares_lock:
            if self._spares:
                return self._spares.pop()
        raw = self.engine.raw_connection()
        conn: Any = raw.driver_connection
        raw.detach()  # ours now: its settings must not reach the pool's other users
        conn.autocommit = True
        conn.execute("SET synchronous_commit TO OFF")
        return conn

    def _return_pg(self, conn: Any) -> None:
        with self._spares_lock:
            if len(self._spares) < MAX_SPARES and not conn.closed:
                self._spares.append(conn)
                return
        conn.close()

    def close(self) -> None:
        if self._points_conn is not None:
            self._points_conn.close()
            self._points_conn = None
        with self._spares_lock:
            spares, self._spares = self._spares, []
        for conn in spares:
            conn.close()
        super().close()

    def metric_points(
        self, ref: RunRef, key: str, offset: int = 0, limit: int | None = None
    ) -> builtins.list[tuple[float | None, int, int]]:
        """A metric's history as (value, timestamp, step), value None for NaN, by step then timestamp:
        one range of the metrics index."""
        sql = (
            'SELECT CASE WHEN is_nan THEN NULL ELSE value END, "timestamp", step FROM tracking_metrics '
            'WHERE run_id = {m} AND key = {m} ORDER BY run_id, key, step, "timestamp"'
        ).format(m="?" if self.is_sqlite else "%s")
        args: list[Any] = [ref.pk, key]
        if limit is not None:
            sql += " LIMIT {m} OFFSET {m}".format(m="?" if self.is_sqlite else "%s")
            args += [limit, offset]
        elif offset:
            sql += " OFFSET {m}".format(m="?" if self.is_sqlite else "%s")
            args.append(offset)
        with self.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql, args)
                return cursor.fetchall()
            finally:
                cursor.close()

    def metric_history_text(self, ref: RunRef, key: str) -> tuple[int, str] | None:
        """PostgreSQL: a whole history as MLflow's JSON items, formatted by the database (its float8
        output is the shortest exact text, as Python's repr), with its count; None on SQLite, whose
        float text is not exact before 3.43. (%% is psycopg's escape for format's own %s.)"""
        if self.is_sqlite:
            return None
        item = (
            'format(\'{"key":%%s,"value":%%s,"timestamp":%%s,"step":%%s}\', %s::text, '
            'CASE WHEN is_nan THEN \'"NaN"\' ELSE value::text END, "timestamp", step)'
        )
        sql = (
            f"SELECT count(*), string_agg({item}, ',' ORDER BY step, \"timestamp\") FROM tracking_metrics "
            "WHERE run_id = %s AND key = %s"
        )
        with self.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql, (json.dumps(key), ref.pk, key))
                count, text = cursor.fetchone()
            finally:
                cursor.close()
        return count, text or ""

    def metric_count(self, ref: RunRef, key: str) -> int:
        """How many points a metric of a run has (one row of the latest values)."""
        q = select(LATEST.c.points).where(LATEST.c.run_id == ref.pk, LATEST.c.key == key)
        with self.connect() as conn:
            return conn.execute(q).scalar() or 0

    def latest_points(self, ref: RunRef) -> builtins.list[Row[Any]]:
        q = select(LATEST).where(LATEST.c.run_id == ref.pk).order_by(LATEST.c.key)
        with self.connect() as conn:
            return list(conn.execute(q))
