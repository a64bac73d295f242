"""Model access keys: per model, stored hashed (sha256); the plain key is shown once, at creation."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import DateTime, Index, String, Table, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from runyard.store.base import StoreBase
from runyard.store.tables import Base


class ModelKeyRow(Base):
    """A key belongs to one Model by uid: a model deleted and made again under its name gets none of the old
    keys. A key is 256 random bits, so sha256 of it is enough (as for API tokens)."""

    __tablename__ = "model_keys"
    __table_args__ = (Index("ix_model_keys_model_uid", "model_uid"),)

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart
    model_uid: Mapped[str] = mapped_column(String(36))
    project: Mapped[str] = mapped_column(String(63))
    model_name: Mapped[str] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(String(256))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


KEYS = cast(Table, ModelKeyRow.__table__)


class ModelKeyStore(StoreBase):
    def add_model_key(self, row: ModelKeyRow) -> None:
        with self.write() as s:
            s.add(row)

    def model_keys(self, model_uid: str) -> list[ModelKeyRow]:
        """The model's keys, oldest first."""
        with self.read() as s:
            query = select(ModelKeyRow).where(ModelKeyRow.model_uid == model_uid)
            return list(s.scalars(query.order_by(ModelKeyRow.created_at, ModelKeyRow.id)))

    def delete_model_key(self, model_uid: str, key_id: str) -> bool:
        """Revoke (delete) one of the model's keys; False when it has none with this id."""
        query = delete(KEYS).where(KEYS.c.model_uid == model_uid, KEYS.c.id == key_id)
        with self.connect(write=True) as conn:
            return bool(conn.execute(query).rowcount)

    def model_key(self, key_hash: str) -> ModelKeyRow | None:
        """The key's row, whether its model exists or not (the caller checks that the model named there
        still has the key's uid: on a cluster Models live elsewhere)."""
        with self.read() as s:
            return s.scalars(select(ModelKeyRow).where(ModelKeyRow.key_hash == key_hash)).first()

    def touch_model_key(self, key_id: str, when: datetime) -> None:
        with self.connect(write=True) as conn:
            conn.execute(update(KEYS).where(KEYS.c.id == key_id).values(last_used_at=when))

    def delete_model_keys(self, model_uid: str) -> None:
        """Every key of a model that is gone."""
        with self.connect(write=True) as conn:
            conn.execute(delete(KEYS).where(KEYS.c.model_uid == model_uid))
