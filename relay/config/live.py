"""The configuration in force, swapped whole on reload.

SIGHUP or a change of the file loads it anew; projects, routes and webhooks take effect
at once (every reader asks for the current object), and a file that does not load keeps
the running configuration (config.example.toml). Listeners, the store and the upstream are fixed at
start (and so are the promotion processes, ``tracking.promotion_processes``): a change
there is logged as needing a restart. ``http.trusted_proxies`` and the
network lists are read per request, so they follow a reload.

An ``overlay`` may change what is in force over what the file says: on a store shared by
several nodes, the route switches changed anywhere (relay/config/shared.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from relay.config.load import Config, ConfigError, load_config
from store.records import ConfigItem
from tracker.metrics import Metrics

log = logging.getLogger("clickrelay.config")

WATCH_INTERVAL_SECONDS = 1.0
_FIXED = ("smtp", "upstream", "store")


OnLoaded = Callable[[Config], Awaitable[object]]
Overlay = Callable[[Config], Config]


class LiveConfig:
    def __init__(self, config: Config, metrics: Metrics, on_loaded: OnLoaded | None = None
                 ) -> None:
        self._file = config  # as the file says
        self._current = config  # as it is in force: the file's, with the overlay on top
        self._overlay: Overlay | None = None
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._stamp = file_stamp(config.path)
        self._on_loaded = on_loaded  # told of every configuration reloaded

    def __call__(self) -> Config:
        return self._current

    @property
    def path(self) -> Path:
        return self._current.path

    @property
    def file_config(self) -> Config:
        """The configuration as the file says, before the overlay."""
        return self._file

    def set_overlay(self, overlay: Overlay | None) -> None:
        """Put ``overlay`` (or none) over the file's configuration, in force at once."""
        self._overlay = overlay
        self._current = overlay(self._file) if overlay is not None else self._file

    def replace(self, config: Config) -> None:
        """Put a configuration in force (the API's write-back has already written it)."""
        self._stamp = file_stamp(config.path)
        self._file = config
        self.set_overlay(self._overlay)

    async def reload(self) -> bool:
        async with self._lock:
            self._stamp = file_stamp(self.path)
            try:
                new = await asyncio.to_thread(load_config, self.path)
            except ConfigError as exc:
                self._metrics.config_reloads.labels("error").inc()
                log.error("configuration not reloaded, keeping the running one: %s", exc)
                return False
            for section in _FIXED:
                if getattr(new, section) != getattr(self._current, section):
                    log.warning("[%s] changed: it takes effect after a restart", section)
            # the listener, and the promotion processes, are made at start
            for section, key in (("http", "listen"), ("http", "click_front"),
                                 ("tracking", "promotion_processes")):
                if (getattr(getattr(new, section), key)
                        != getattr(getattr(self._current, section), key)):
                    log.warning("%s.%s changed: it takes effect after a restart", section, key)
            self._file = new
            self.set_overlay(self._overlay)
            self._metrics.config_reloads.labels("ok").inc()
            log.info("configuration reloaded from %s", self.path)
            if self._on_loaded is not None:
                try:
                    await self._on_loaded(new)
                except Exception:  # the new configuration is in force all the same
                    log.exception("could not note the reloaded configuration")
            return True

    async def watch(self) -> None:
        """Reload when the file changes (mtime, size or inode)."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_SECONDS)
            stamp = file_stamp(self.path)
            if stamp != self._stamp:
                with contextlib.suppress(Exception):
                    await self.reload()


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells that a file changed: mtime, size and inode (None if it is gone)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def config_items(config: Config) -> list[ConfigItem]:
    """Every route and webhook of ``config``, each with a hash of all its settings (a
    webhook's secret included, so that a new secret is a change)."""
    items = []
    for project in config.projects:
        for kind, entries in (("route", project.routes), ("webhook", project.webhooks)):
            for entry in entries:
                settings = json.dumps([project.id, dataclasses.asdict(entry)], sort_keys=True)
                items.append(ConfigItem(kind, item_key(project.id, entry.id),
                                        hashlib.sha256(settings.encode()).hexdigest()))
    return items


def item_key(project_id: str, item_id: str) -> str:
    """A route's or a webhook's key among the noted items (webhook ids are unique only
    within their project)."""
    return f"{project_id}/{item_id}"
