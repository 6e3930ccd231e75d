"""The ``[dashboard]`` table: the admin accounts that may sign in to the dashboard
(``[[dashboard.users]]``, each a name and an argon2 hash made by ``clickrelay
hash-password``) and how long a session lasts (docs/dashboard.md). The team token signs in
too; it is ``[api] team_token``."""

from __future__ import annotations

from dataclasses import dataclass, field

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from relay.config.table import Table

# The development account of config.example.toml; `clickrelay serve` warns while a hash of
# this password is in use (README, "The dashboard").
EXAMPLE_PASSWORD = "dev-admin-password-change-me"
MAX_NAME_LENGTH = 64


@dataclass(frozen=True)
class DashboardUser:
    name: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True)
class DashboardConfig:
    users: tuple[DashboardUser, ...] = ()
    session_hours: float = 12.0

    def user(self, name: str) -> DashboardUser | None:
        return next((u for u in self.users if u.name == name), None)

    def example_users(self) -> list[str]:
        """The users whose password is still the example's (slow: argon2 per user)."""
        return [u.name for u in self.users if verify_password(u.password_hash, EXAMPLE_PASSWORD)]


def hash_password(password: str) -> str:
    """An argon2id hash with argon2-cffi's default (RFC 9106 low-memory) parameters."""
    return argon2.PasswordHasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches; CPU-bound for tens of milliseconds by design."""
    try:
        return argon2.PasswordHasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def parse_dashboard(t: Table) -> DashboardConfig:
    users = tuple(_user(ut) for ut in t.tables("users"))
    names = [u.name for u in users]
    for name in names:
        if names.count(name) > 1:
            raise t.error("users", f"duplicate name {name!r}")
    cfg = DashboardConfig(users=users,
                          session_hours=t.positive_number("session_hours", 12.0))
    t.done()
    return cfg


def _user(t: Table) -> DashboardUser:
    name = t.text("name")
    if len(name) > MAX_NAME_LENGTH or not name.isprintable() or name != name.strip():
        raise t.error("name", f"must be printable, without surrounding spaces, at most "
                              f"{MAX_NAME_LENGTH} characters")
    password_hash = t.text("password_hash", secret=True)
    try:
        argon2.extract_parameters(password_hash)
    except InvalidHashError as exc:
        raise t.error("password_hash", "must be an argon2 hash from `clickrelay "
                                       "hash-password`") from exc
    t.done()
    return DashboardUser(name, password_hash)
