"""When the routes and webhooks of the configuration file were first seen, and last
changed: their ``created_at`` and ``updated_at`` in the API (docs/api.md). The file has no
such times, and its own changes with every edit or write-back of any item."""

from __future__ import annotations

from collections.abc import Sequence

from store.backend import Database
from store.records import ConfigItem, ItemTimes


class ConfigItemStore:
    db: Database

    async def note_config_items(
        self, items: Sequence[ConfigItem], now: int
    ) -> dict[tuple[str, str], ItemTimes]:
        """The times of ``items``, by (kind, id): an item not seen before is created now,
        one whose fingerprint changed is updated now, the others keep their times. Writes
        only when something is new or changed."""
        times = await self._times(items)
        stale = [item for item in items if (item.kind, item.id) not in times
                 or times[item.kind, item.id][0] != item.fingerprint]
        if stale:
            async with self.db.transaction() as tx:
                await tx.executemany(
                    "INSERT INTO config_items (kind, id, fingerprint, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, id) DO UPDATE SET"
                    " fingerprint = excluded.fingerprint, updated_at = excluded.updated_at"
                    " WHERE config_items.fingerprint != excluded.fingerprint",
                    [(i.kind, i.id, i.fingerprint, now, now) for i in stale],
                )
            times = await self._times(items)
        return {key: ItemTimes(created, updated)
                for key, (_, created, updated) in times.items()}

    async def _times(self, items: Sequence[ConfigItem]
                     ) -> dict[tuple[str, str], tuple[str, int, int]]:
        times = {}
        for kind in {item.kind for item in items}:
            rows = await self.db.fetchall(
                "SELECT id, fingerprint, created_at, updated_at FROM config_items"
                " WHERE kind = ?", (kind,))
            times.update({(kind, r[0]): (r[1], r[2], r[3]) for r in rows})
        return times
