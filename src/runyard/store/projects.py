"""Projects: the namespaces resources live in."""

from __future__ import annotations

import builtins

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from runyard.core.clock import now
from runyard.store.base import StoreBase
from runyard.store.tables import ProjectRow


class ProjectStore(StoreBase):
    def ensure_project(self, name: str) -> None:
        if name in self._known_projects:
            return
        with self.write() as s:
            if s.get(ProjectRow, name) is None:
                s.add(ProjectRow(name=name, created_at=now()))
        self._known_projects.add(name)

    def projects(self) -> builtins.list[str]:
        with self.read() as s:
            return list(s.scalars(select(ProjectRow.name).order_by(ProjectRow.name)))

    def project_list(self) -> builtins.list[ProjectRow]:
        """Every project with when it was made, by name."""
        with self.read() as s:
            return list(s.scalars(select(ProjectRow).order_by(ProjectRow.name)))

    def add_project(self, name: str) -> ProjectRow | None:
        """Create a project; None when it exists already (or another caller created it meanwhile)."""
        row = ProjectRow(name=name, created_at=now())
        try:
            with self.write() as s:
                if s.get(ProjectRow, name) is not None:
                    return None
                s.add(row)
        except IntegrityError:
            return None
        self._known_projects.add(name)
        return row
