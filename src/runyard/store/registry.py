"""The model registry (MLflow-compatible): registered models, their versions, aliases and tags.

A registered model is named per project and keyed by a number, so a rename touches one row. Its tags and
aliases, and each version's tags, are few and read whole with their owner: JSON, not rows of their own.
Versions are numbered from the model's `last_version`, so a deleted version's number is never reused.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    JSON,
    BigInteger,
    Index,
    Integer,
    Select,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from runyard.store.base import StoreBase
from runyard.store.tables import Base


class RegisteredModelRow(Base):
    __tablename__ = "registered_models"
    __table_args__ = (UniqueConstraint("project", "name", name="uq_registered_models_project_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    tags: Mapped[dict] = mapped_column(JSON)
    aliases: Mapped[dict] = mapped_column(JSON)  # alias -> version number
    last_version: Mapped[int] = mapped_column(Integer)
    creation_timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    last_updated_timestamp_ms: Mapped[int] = mapped_column(BigInteger)


class ModelVersionRow(Base):
    """A version: where its files are (`storage_location`, resolved from `source` when registered) and
    what it came from (run, logged model)."""

    __tablename__ = "model_versions"
    __table_args__ = (Index("ix_model_versions_run_id", "run_id"),)

    registered_model_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    storage_location: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    run_link: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_id: Mapped[str | None] = mapped_column(String(34), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    current_stage: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(32))
    tags: Mapped[dict] = mapped_column(JSON)
    creation_timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    last_updated_timestamp_ms: Mapped[int] = mapped_column(BigInteger)


class RegistryStore(StoreBase):
    def registered_model(self, project: str, name: str) -> RegisteredModelRow | None:
        with self.read() as s:
            return s.scalars(_named(project, name)).first()

    def registered_models(self, project: str) -> list[RegisteredModelRow]:
        query = select(RegisteredModelRow).where(RegisteredModelRow.project == project)
        with self.read() as s:
            return list(s.scalars(query))

    def add_registered_model(self, row: RegisteredModelRow) -> RegisteredModelRow | None:
        """The row added, or None when the project has a model of that name already."""
        try:
            with self.write() as s:
                s.add(row)
        except IntegrityError:
            return None
        return row

    def change_registered_model(
        self, project: str, name: str, edit: Callable[[RegisteredModelRow], object]
    ) -> RegisteredModelRow | None:
        """Apply `edit` to the model's row in one transaction (the row locked); the row after, or None if
        there is none. IntegrityError (a rename onto a taken name) propagates."""
        with self.write() as s:
            row = s.scalars(_named(project, name).with_for_update()).first()
            if row is not None:
                edit(row)
        return row

    def delete_registered_model(self, project: str, name: str) -> bool:
        with self.write() as s:
            row = s.scalars(_named(project, name).with_for_update()).first()
            if row is None:
                return False
            s.execute(delete(ModelVersionRow).where(ModelVersionRow.registered_model_id == row.id))
            s.delete(row)
        return True

    def model_versions(self, model_ids: list[int]) -> list[ModelVersionRow]:
        query = select(ModelVersionRow).where(ModelVersionRow.registered_model_id.in_(model_ids))
        with self.read() as s:
            return list(s.scalars(query))

    def model_version(self, model_id: int, version: int) -> ModelVersionRow | None:
        with self.read() as s:
            return s.get(ModelVersionRow, (model_id, version))

    def add_model_version(
        self, project: str, name: str, make: Callable[[RegisteredModelRow, int], ModelVersionRow]
    ) -> tuple[RegisteredModelRow, ModelVersionRow] | None:
        """Number and add the version make(model, number) returns, the model's row locked meanwhile so
        concurrent registrations get distinct numbers; None if there is no such model."""
        with self.write() as s:
            model = s.scalars(_named(project, name).with_for_update()).first()
            if model is None:
                return None
            model.last_version += 1
            row = make(model, model.last_version)
            model.last_updated_timestamp_ms = row.creation_timestamp_ms
            s.add(row)
        return model, row

    def change_model_version(
        self, model_id: int, version: int, edit: Callable[[ModelVersionRow], object]
    ) -> ModelVersionRow | None:
        with self.write() as s:
            row = s.get(ModelVersionRow, (model_id, version), with_for_update=True)
            if row is not None:
                edit(row)
        return row

    def change_model_versions(
        self, model_id: int, edit: Callable[[list[ModelVersionRow]], object]
    ) -> list[ModelVersionRow]:
        """Apply `edit` to all of a model's versions in one transaction (a stage transition that
        archives the others)."""
        query = (
            select(ModelVersionRow).where(ModelVersionRow.registered_model_id == model_id).with_for_update()
        )
        with self.write() as s:
            rows = list(s.scalars(query))
            edit(rows)
        return rows

    def delete_model_version(self, model_id: int, version: int) -> bool:
        """Delete the version and the aliases that point at it."""
        with self.write() as s:
            model = s.get(RegisteredModelRow, model_id, with_for_update=True)
            row = s.get(ModelVersionRow, (model_id, version))
            if model is None or row is None:
                return False
            s.delete(row)
            if version in model.aliases.values():
                model.aliases = {a: v for a, v in model.aliases.items() if v != version}
        return True


def _named(project: str, name: str) -> Select[RegisteredModelRow]:
    return select(RegisteredModelRow).where(
        RegisteredModelRow.project == project, RegisteredModelRow.name == name
    )
