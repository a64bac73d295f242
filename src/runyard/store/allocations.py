"""What runs hold of the node (cpu, memory, GPU claims), written atomically.

A reservation is one transaction: lock the node's row (PostgreSQL: SELECT ... FOR UPDATE; SQLite: the
write transaction already excludes other writers), sum what is held, and insert the run's allocation and
its GPU claims only if it fits. The claims' primary key (node, gpu_index) makes a GPU held twice
impossible even for a writer that skipped the lock. Reserving is idempotent per run: a second call
returns the first reservation (a crash between reserving and saving the run's Starting phase leaves one,
which its next start reuses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session as DBSession

from runyard.core.clock import now
from runyard.core.phases import TERMINAL
from runyard.store.base import StoreBase
from runyard.store.tables import Base, ResourceRow

EPSILON = 1e-6  # cores are sums of decimal fractions

NODES = Table(
    "nodes",
    Base.metadata,
    Column("name", String(63), primary_key=True),
    Column("cpu", Float(precision=53), nullable=False),
    Column("memory", BigInteger, nullable=False),
    Column("gpus", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
ALLOCATIONS = Table(
    "allocations",
    Base.metadata,
    Column("run_uid", String(36), primary_key=True),
    Column("node", String(63), nullable=False),
    Column("project", String(63), nullable=False),
    Column("run_name", String(63), nullable=False),
    Column("cpu", Float(precision=53), nullable=False),  # 0: the run named no cpu
    Column("memory", BigInteger, nullable=False),  # 0: the run named no memory
    Column("gpus", JSON, nullable=False),  # its GPU indices, as gpu_claims holds them
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_allocations_node", "node"),
)
GPU_CLAIMS = Table(
    "gpu_claims",
    Base.metadata,
    Column("node", String(63), primary_key=True),
    Column("gpu_index", Integer, primary_key=True),
    Column("run_uid", String(36), nullable=False),
    Index("ix_gpu_claims_run_uid", "run_uid"),
)
RESOURCES = Base.metadata.tables[ResourceRow.__tablename__]


@dataclass(frozen=True)
class Demand:
    """What a run asks of the node; 0 where it names nothing (it then reserves nothing of that)."""

    cpu: float = 0.0
    memory: int = 0
    gpu: int = 0

    def __bool__(self) -> bool:
        return bool(self.cpu or self.memory or self.gpu)


@dataclass(frozen=True)
class Capacity:
    cpu: float
    memory: int
    gpus: tuple[int, ...]  # the indices offered


@dataclass(frozen=True)
class Holder:
    """One run's allocation."""

    uid: str
    project: str
    name: str
    cpu: float
    memory: int
    gpus: tuple[int, ...]

    def as_status(self) -> dict[str, Any]:
        """status.allocation: the GPU indices always, cpu and memory when it reserved some."""
        doc: dict[str, Any] = {"gpus": list(self.gpus)}
        if self.cpu:
            doc["cpu"] = self.cpu
        if self.memory:
            doc["memory"] = self.memory
        return doc


@dataclass
class NodeUsage:
    """Everything held on a node, oldest allocation first."""

    holders: list[Holder] = field(default_factory=list)

    @property
    def cpu(self) -> float:
        return sum(h.cpu for h in self.holders)

    @property
    def memory(self) -> int:
        return sum(h.memory for h in self.holders)

    @property
    def gpu_holders(self) -> dict[int, Holder]:
        return {i: h for h in self.holders for i in h.gpus}

    def free_gpus(self, capacity: Capacity) -> list[int]:
        held = self.gpu_holders
        return [i for i in capacity.gpus if i not in held]

    def fits(self, demand: Demand, capacity: Capacity) -> bool:
        return (
            self.cpu + demand.cpu <= capacity.cpu + EPSILON
            and self.memory + demand.memory <= capacity.memory
            and len(self.free_gpus(capacity)) >= demand.gpu
        )

    def plus(self, holder: Holder) -> NodeUsage:
        return NodeUsage([*self.holders, holder])


def _holder(row: Any) -> Holder:
    return Holder(row.run_uid, row.project, row.run_name, row.cpu, row.memory, tuple(row.gpus or ()))


def release_in(conn: Connection | DBSession, run_uid: str) -> None:
    """Free what the run holds, inside the caller's transaction (the one that ends or deletes the run)."""
    conn.execute(delete(GPU_CLAIMS).where(GPU_CLAIMS.c.run_uid == run_uid))
    conn.execute(delete(ALLOCATIONS).where(ALLOCATIONS.c.run_uid == run_uid))


class AllocationStore(StoreBase):
    def register_node(self, name: str, capacity: Capacity) -> None:
        """Create or update the node's row: the row reservations lock, and its capacity for readers."""
        values = {
            "cpu": capacity.cpu,
            "memory": capacity.memory,
            "gpus": len(capacity.gpus),
            "updated_at": now(),
        }
        with self.connect(write=True) as conn:
            done = conn.execute(update(NODES).where(NODES.c.name == name).values(**values)).rowcount
            if not done:
                conn.execute(insert(NODES).values(name=name, **values))

    def node_usage(self, node: str) -> NodeUsage:
        with self.connect() as conn:
            return self._usage(conn, node)

    @staticmethod
    def _usage(conn: Connection, node: str) -> NodeUsage:
        q = select(ALLOCATIONS).where(ALLOCATIONS.c.node == node)
        rows = conn.execute(q.order_by(ALLOCATIONS.c.created_at, ALLOCATIONS.c.run_uid)).all()
        return NodeUsage([_holder(r) for r in rows])

    def allocation_of(self, run_uid: str) -> Holder | None:
        with self.connect() as conn:
            row = conn.execute(select(ALLOCATIONS).where(ALLOCATIONS.c.run_uid == run_uid)).first()
        return _holder(row) if row else None

    def reserve(
        self, node: str, capacity: Capacity, run_uid: str, project: str, run_name: str, demand: Demand
    ) -> Holder | NodeUsage:
        """The run's allocation (made now, or the one it holds already), or, when it does not fit, what
        the node's holders hold (to say what it waits for)."""
        with self.connect(write=True) as conn:
            locked = conn.execute(select(NODES.c.name).where(NODES.c.name == node).with_for_update()).first()
            if locked is None:  # registered at start; a store shared with an older server may lack it
                values = {"cpu": capacity.cpu, "memory": capacity.memory, "gpus": len(capacity.gpus)}
                conn.execute(insert(NODES).values(name=node, updated_at=now(), **values))
            row = conn.execute(select(ALLOCATIONS).where(ALLOCATIONS.c.run_uid == run_uid)).first()
            if row is not None:
                return _holder(row)
            usage = self._usage(conn, node)
            if not usage.fits(demand, capacity):
                return usage
            gpus = tuple(usage.free_gpus(capacity)[: demand.gpu])
            holder = Holder(run_uid, project, run_name, demand.cpu, demand.memory, gpus)
            conn.execute(
                insert(ALLOCATIONS).values(
                    run_uid=run_uid, node=node, project=project, run_name=run_name, cpu=demand.cpu,
                    memory=demand.memory, gpus=list(gpus), created_at=now(),
                )
            )  # fmt: skip
            if gpus:
                conn.execute(
                    insert(GPU_CLAIMS), [{"node": node, "gpu_index": i, "run_uid": run_uid} for i in gpus]
                )
            return holder

    def release_allocation(self, run_uid: str) -> None:
        with self.connect(write=True) as conn:
            release_in(conn, run_uid)

    def release_stale_allocations(self) -> list[str]:
        """Free what runs hold that ended or are gone (what a crash may leave); the uids freed. Runs still
        Queued keep theirs: their next start reuses it."""
        live = select(RESOURCES.c.uid).where(
            RESOURCES.c.kind == "Run", RESOURCES.c.phase.not_in([p.value for p in TERMINAL])
        )
        with self.connect(write=True) as conn:
            stale = list(
                conn.execute(
                    select(ALLOCATIONS.c.run_uid).where(ALLOCATIONS.c.run_uid.not_in(live))
                ).scalars()
            )
            stale += conn.execute(
                select(GPU_CLAIMS.c.run_uid).where(
                    GPU_CLAIMS.c.run_uid.not_in(live), GPU_CLAIMS.c.run_uid.not_in(stale)
                )
            ).scalars()
            for uid in stale:
                release_in(conn, uid)
        return stale
