"""``clickrelay store copy --from URL --to URL``: the command's URLs read and its progress
told; the copy itself is store/copy.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from relay.config.store import store_config
from store.copy import CopyError, copy_between


def store_where(url: str) -> Path | str:
    """What ``Store.open`` takes for a URL given on the command line: as the configuration's
    ``[store] url`` (``env:NAME`` taken from the environment), a relative SQLite path from
    the current directory. A bad URL raises CopyError."""
    if url.startswith("env:"):
        name = url[4:]
        resolved = os.environ.get(name)
        if not resolved:
            raise CopyError(f"environment variable {name} is not set or empty")
        url = resolved
    try:
        return store_config(url, Path.cwd()).where
    except ValueError as exc:
        raise CopyError(f"{_shown(url)}: {exc}") from None


def _shown(url: str) -> str:
    """A URL for a message: its scheme only when it might carry a password."""
    return url if url.startswith("sqlite:") else url.split("://", 1)[0] + "://…"


def _progress(table: str, done: int, total: int) -> None:
    print(f"clickrelay store copy: {table}: {done} of {total} rows", file=sys.stderr,
          flush=True)


async def store_copy(source_url: str, target_url: str) -> int:
    try:
        copied = await copy_between(store_where(source_url), store_where(target_url),
                                    _progress)
    except CopyError as exc:
        print(f"clickrelay: cannot copy the store: {exc}", file=sys.stderr)
        return 1
    print(f"copied {sum(copied.values())} rows in {len(copied)} tables")
    return 0
