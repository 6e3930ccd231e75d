"""Route switches shared by the nodes of one database (migrations/0012_route_settings.sql):
the last change of each route's ``track_clicks`` and ``track_opens``, wherever it was made.
relay/config/shared.py puts them in force over each node's configuration file."""

from __future__ import annotations

from collections.abc import Mapping

from store.backend import Database, Tx

RouteSwitches = dict[str, dict[str, bool]]  # route id -> {track_clicks: …, track_opens: …}


class RouteSettingStore:
    db: Database

    async def route_settings(self) -> tuple[int, RouteSwitches]:
        """Every route's switches, and a version that changes whenever one does."""
        rows = await self.db.fetchall("SELECT route_id, key, value, changed_at FROM route_settings")
        switches: RouteSwitches = {}
        for route_id, key, value, _ in rows:
            switches.setdefault(route_id, {})[key] = bool(value)
        return max((r[3] for r in rows), default=0) + len(rows), switches

    async def set_route_settings(
        self, route_id: str, changes: Mapping[str, bool], now: int
    ) -> None:
        async def write(tx: Tx) -> None:
            await tx.executemany(
                "INSERT INTO route_settings (route_id, key, value, changed_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (route_id, key) DO UPDATE SET"
                " value = excluded.value, changed_at = excluded.changed_at",
                [(route_id, key, int(value), now) for key, value in changes.items()])

        await self.db.write(write)
