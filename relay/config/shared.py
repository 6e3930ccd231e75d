"""Route switches on a store shared by several nodes (docs/deployment.md, "Route settings").

Each node reads its own configuration file, and every node is given the same one. A route's
``track_clicks`` or ``track_opens`` changed on one node (through the API or the dashboard,
or by editing that node's file while it runs) must take effect on all of them, so the
change is also written to the store (store/route_settings.py), the last change of each
switch winning, and every node puts the store's switches in force over its file's:

- the API and the dashboard write the node's file, as on a single node, and the store;
- a node that reloads its file writes to the store the switches that changed in the file
  since it last read it (an admin's edit), and only those;
- every node reads the store's switches every ``POLL_SECONDS`` and at start, so that a
  change made on one node is in force on every other within two seconds, and survives a
  restart of any of them. A file edited while its node was stopped does not override the
  store at start: its switches were changed by no one the nodes saw.

An inbound route never tracks: the store's switches are not applied to it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping

from relay.config.live import LiveConfig
from relay.config.load import Config
from store.clock import now_us
from store.route_settings import RouteSwitches
from store.store import Store
from tracker.config import RouteConfig

log = logging.getLogger("clickrelay.config")

POLL_SECONDS = 1.0
SWITCHES = ("track_clicks", "track_opens")


class SharedRouteSettings:
    def __init__(self, live: LiveConfig, store: Store) -> None:
        self._live = live
        self._store = store
        self._version: int | None = None
        self._switches: RouteSwitches = {}
        self._file = live.file_config  # the file as last read, to tell an edit from a reload

    async def start(self) -> None:
        """Read the store's switches and put them in force (before the node serves)."""
        await self.refresh()
        self._live.set_overlay(self.apply)

    def apply(self, config: Config) -> Config:
        """``config`` with the store's route switches on top."""
        if not self._switches:
            return config
        projects = tuple(dataclasses.replace(p, routes=tuple(
            _switched(r, self._switches.get(r.id, {})) for r in p.routes))
            for p in config.projects)
        return dataclasses.replace(config, projects=projects)

    async def refresh(self) -> bool:
        """Read the store's switches; whether they changed (and were put in force)."""
        version, switches = await self._store.route_settings()
        if version == self._version:
            return False
        self._version, self._switches = version, switches
        self._live.set_overlay(self.apply)
        return True

    async def changed(self, route_id: str, changes: Mapping[str, bool]) -> None:
        """A switch set through the API or the dashboard on this node (its file written)."""
        await self._store.set_route_settings(route_id, changes, now_us())
        self._file = self._live.file_config
        await self.refresh()

    async def file_loaded(self, new: Config) -> None:
        """This node's file was reloaded: what an admin changed in it goes to every node."""
        before = {r.id: r for p in self._file.projects for r in p.routes}
        self._file = new
        for project in new.projects:
            for route in project.routes:
                old = before.get(route.id)
                edited = {key: getattr(route, key) for key in SWITCHES
                          if old is None or getattr(old, key) != getattr(route, key)}
                if old is not None and edited:
                    log.info("route %s changed in the file: %s, for every node", route.id,
                             edited)
                    await self._store.set_route_settings(route.id, edited, now_us())
        await self.refresh()

    async def run(self) -> None:
        """Follow the changes made on other nodes (a supervised task)."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if await self.refresh():
                log.info("route settings changed on another node; now in force here")


def _switched(route: RouteConfig, switches: Mapping[str, bool]) -> RouteConfig:
    if route.type == "inbound":
        return route
    return dataclasses.replace(
        route, track_clicks=switches.get("track_clicks", route.track_clicks),
        track_opens=switches.get("track_opens", route.track_opens))
