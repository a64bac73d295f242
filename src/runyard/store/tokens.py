"""API tokens, kept as hashes of their secrets."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Row, Table, select, update

from runyard.store.base import StoreBase
from runyard.store.tables import TokenRow

TOKENS = cast(Table, TokenRow.__table__)


class TokenStore(StoreBase):
    def add_token(self, row: TokenRow) -> None:
        with self.write() as s:
            s.add(row)

    def token_by_hash(self, secret_hash: str) -> Row[Any] | None:
        """The token's row (id, name, role, project, run_uid), unless it is unknown or revoked."""
        with self.connect() as conn:
            row = conn.execute(select(TOKENS).where(TOKENS.c.secret_hash == secret_hash)).first()
        return None if row is None or row.revoked else row

    def has_admin_token(self) -> bool:
        with self.read() as s:
            query = select(TokenRow.id).where(TokenRow.role == "admin", TokenRow.revoked.is_(False))
            return s.scalars(query).first() is not None

    def revoke_run_tokens(self, run_uid: str) -> None:
        with self.write() as s:
            s.execute(update(TokenRow).where(TokenRow.run_uid == run_uid).values(revoked=True))

    def live_run_tokens(self, name_prefix: str) -> list[TokenRow]:
        """The unrevoked run tokens whose name starts with `name_prefix` (an operator's "model ", ...)."""
        query = select(TokenRow).where(
            TokenRow.role == "run", TokenRow.revoked.is_(False), TokenRow.name.startswith(name_prefix)
        )
        with self.read() as s:
            return list(s.scalars(query))

    def tokens(self) -> list[TokenRow]:
        """Every token, oldest first (run tokens included: they show which run acted)."""
        with self.read() as s:
            return list(s.scalars(select(TokenRow).order_by(TokenRow.created_at, TokenRow.id)))

    def revoke_token(self, token_id: str) -> TokenRow | None:
        """Revoke one token; its row afterwards, or None for an unknown id. Revoking twice is harmless."""
        with self.write() as s:
            row = s.get(TokenRow, token_id)
            if row is not None:
                row.revoked = True
        return row
