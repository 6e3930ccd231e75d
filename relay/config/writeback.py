"""Route settings changed through the API, written back into the configuration file.

The file stays the one source of truth (config.example.toml, docs/api.md): tomlkit edits the
values in place so that comments, order and layout are kept; the new text is written to a
temporary file in the same directory, flushed to disk, loaded with the same loader as at
start-up, and only then renamed over the old file, so that a crash leaves either the old or
the new file and never a half-written or invalid one. An administrator's own edit of the
file is read fresh on every write-back and is never overwritten."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from relay.config.live import file_stamp
from relay.config.load import Config, ConfigError, load_config
from relay.errors import Conflict

# An administrator may save the file while a write-back is under way: read it again and
# redo the edit, a few times at most.
WRITE_ATTEMPTS = 3


def write_route_settings(path: Path, route_id: str, changes: Mapping[str, bool]) -> Config:
    """Set ``changes`` (``track_clicks``, ``track_opens``) on route ``route_id`` in the file
    and return the configuration it now holds. Blocking: call it in a worker thread."""
    for _ in range(WRITE_ATTEMPTS):
        before = file_stamp(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise Conflict(f"cannot read the configuration file {path}: {exc}") from exc
        config = _install(path, edit_route_settings(text, route_id, changes), before)
        if config is not None:
            return config
    raise Conflict(f"the configuration file {path} kept changing during the update; try again")


def edit_route_settings(text: str, route_id: str, changes: Mapping[str, bool]) -> str:
    """The file's text with the route's keys set; everything else exactly as it was."""
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise Conflict(f"the configuration file is not valid TOML ({exc}); fix it first") from exc
    route = _find_route(doc, route_id)
    for key, value in changes.items():
        _set_keeping_layout(route, key, value)
    return tomlkit.dumps(doc)


def _find_route(doc: Any, route_id: str) -> Any:
    projects = doc.get("projects", [])
    for project in projects if isinstance(projects, list) else []:
        routes = project.get("routes", []) if isinstance(project, Mapping) else []
        for route in routes if isinstance(routes, list) else []:
            if isinstance(route, Mapping) and route.get("id") == route_id:
                return route
    raise Conflict(f"route {route_id!r} is no longer in the configuration file")


def _set_keeping_layout(table: Any, key: str, value: bool) -> None:
    old = table.item(key).as_string() if key in table else None
    table[key] = value
    if old is None:
        return
    # `true` → `false` is one character longer: take it from the padding before a trailing
    # comment, so that aligned comments stay aligned.
    trivia = table.item(key).trivia
    grown = len(table.item(key).as_string()) - len(old)
    if trivia.comment and grown > 0 and len(trivia.comment_ws) > grown:
        trivia.comment_ws = trivia.comment_ws[:-grown]
    elif trivia.comment and grown < 0:
        trivia.comment_ws += " " * -grown


def _install(path: Path, text: str, before: tuple[int, int, int] | None) -> Config | None:
    """Write, check and rename into place; ``None`` if the file changed meanwhile."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        _copy_mode(path, tmp)
        try:
            config = load_config(tmp)
        except ConfigError as exc:
            reason = str(exc).replace(str(tmp), str(path))
            raise Conflict(f"the updated configuration does not load: {reason}") from exc
        if file_stamp(path) != before:
            return None
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)
    return dataclasses.replace(config, path=path)


def _copy_mode(source: Path, target: Path) -> None:
    """The file holds secrets: the new one gets the old one's permissions."""
    with contextlib.suppress(OSError):
        os.chmod(target, source.stat().st_mode & 0o7777)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
