"""Group commit, the same on both databases (``Database.write_grouped``): writes asked for
while a group is being committed wait, and go together in the next transaction, each in a
savepoint of its own. The database says how one group is run (``RunGroup``); the queue,
the order and who is answered what are here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from store.backend import Work

T = TypeVar("T")

GROUP_LIMIT = 64  # writes that share one commit, at most

# Runs a group's writes in one transaction: for each, (True, its result) or (False, the
# exception that undid it alone); raises if the transaction failed as a whole.
RunGroup = Callable[[list[Work[Any]]], Awaitable[list[tuple[bool, Any]]]]


class GroupCommit:
    def __init__(self, run_group: RunGroup) -> None:
        self._run_group = run_group
        self._waiting: list[tuple[Work[Any], asyncio.Future[Any]]] = []
        self._committing: asyncio.Task[None] | None = None

    async def submit(self, work: Work[T]) -> T:
        """``work``'s result once its group is committed, or the exception that undid it.

        A write whose caller was cancelled before its group began is left out; once its
        group has begun it is committed or not with the group, as with a transaction."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_groups())
        return await future

    async def drain(self) -> None:
        """Wait until the writes asked for so far are committed (before closing)."""
        while self._committing is not None and not self._committing.done():
            await asyncio.wait([self._committing])

    async def _commit_groups(self) -> None:
        while self._waiting:
            group = [(w, f) for w, f in self._waiting[:GROUP_LIMIT] if not f.cancelled()]
            del self._waiting[:GROUP_LIMIT]
            if not group:
                continue
            try:
                outcomes = await self._run_group([w for w, _ in group])
            except BaseException as exc:  # the group's transaction failed as a whole
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception)
                                             else RuntimeError("the write was interrupted"))
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
