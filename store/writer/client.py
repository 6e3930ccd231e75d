"""The observation writer, the server's end: a process of its own that commits the
tracker's clicks (docs/redirect.md).

Every click's observation is committed (WAL, ``synchronous = FULL``) before its 302 goes
out, in batches (group commit, tracker/clicks/recorder.py). The commit runs in a process of
its own (store/writer/process.py, which also describes the conversation) rather than on
aiosqlite's thread in the server's process: there, the work around each commit (binding
the rows, handing them to a thread and back) held the GIL that the event loop needs to
answer the clicks. Here the loop only sends each batch down a pipe and reads one short
answer; docs/performance.md has the measurements.

A row the writer cannot store (a value SQLite refuses) is left out of its batch, which is
committed without it; ``record_observations`` returns such rows' places in the batch,
and logs why."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from store.clicks import observation_values
from store.records import Observation
from store.writer.process import FRAME

log = logging.getLogger("clickrelay.writer")

START_TIMEOUT = 30.0  # seconds for a new writer to open the database
STOP_TIMEOUT = 10.0  # seconds for the writer to finish once its input is closed

# An answer: the batch's key, the error that failed it, the rows left out (index, why).
Reply = tuple[int, str | None, list[tuple[int, str]]]


class ObservationWriteError(Exception):
    """A batch the writer did not commit: what SQLite said, or that the writer went away."""


class _WriterExited(ObservationWriteError):
    pass


class ObservationWriter:
    """The server's end: ``record_observations`` returns once the batch is committed, or
    raises ``ObservationWriteError``. A writer that has gone is replaced at the next batch."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()  # one batch at a time on the pipe
        self._last: tuple[Sequence[Observation], int] | None = None  # a batch and its key

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the writer now, so that a database it cannot open stops the server's start."""
        async with self._lock:
            if self._process is None:
                await self._spawn()

    async def record_observations(self, batch: Sequence[Observation]) -> list[int]:
        """Commit ``batch``; the places in it of the rows that could not be stored and
        were left out (most often none)."""
        if not batch:
            return []
        # The recorder hands the same list again when it retries a batch: same key.
        if self._last is None or self._last[0] is not batch:
            # From the system's generator: the random module's state is the process's to
            # share, and a test framework that seeds it (hypothesis does, per example) made
            # every batch the same key, which the writer took for one already committed.
            self._last = (batch, secrets.randbits(63) | 1)  # never 0, the table's start
        key = self._last[1]
        request = batch_request(key, batch)
        async with self._lock:
            try:
                answer_key, error, dropped = await self._exchange(await self._running(),
                                                                  request)
            except _WriterExited as exc:
                # It may have gone before the batch was sent (a writer killed between two
                # batches is seen only now): once more with a new one; the key makes a
                # batch it did commit harmless.
                log.warning("%s; starting another", exc)
                answer_key, error, dropped = await self._exchange(await self._running(),
                                                                  request)
        if error is not None:
            raise ObservationWriteError(error)
        if answer_key != key:  # the conversation is out of step: a defect, not a disk error
            await self.close()
            raise ObservationWriteError(f"the observation writer answered batch {answer_key} "
                                        f"for batch {key}")
        if dropped:
            _log_dropped(dropped, len(batch))
        return [row for row, _ in dropped]

    async def close(self) -> None:
        """Close the writer's input and wait for it to finish the batch in hand."""
        async with self._lock:
            process, self._process = self._process, None
            if process is not None:
                await end_child(process, STOP_TIMEOUT, "the observation writer")

    async def _running(self) -> asyncio.subprocess.Process:
        process = self._process
        if process is not None and process.returncode is None:
            return process
        if process is not None:
            log.warning("the observation writer exited with status %s; starting another",
                        process.returncode)
        return await self._spawn()

    async def _spawn(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "store.writer.process", str(self._path.absolute()),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        try:
            _, error, _ = await asyncio.wait_for(_read_answer(process.stdout), START_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError):
            _kill(process)
            status = await process.wait()
            raise ObservationWriteError(
                f"the observation writer for {self._path} did not start (status {status})"
            ) from None
        if error is not None:
            await process.wait()
            raise ObservationWriteError(f"the observation writer cannot open {self._path}: "
                                        f"{error}")
        log.info("observation writer started (pid %d)", process.pid)
        self._process = process
        return process

    async def _exchange(self, process: asyncio.subprocess.Process, request: bytes) -> Reply:
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(request)
            await process.stdin.drain()
            return await _read_answer(process.stdout)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self._process = None
            _kill(process)
            status = await process.wait()
            raise _WriterExited(
                f"the observation writer exited (status {status}) before answering"
            ) from exc
        except BaseException:
            # Cancelled halfway: the conversation is lost, so is this writer. The batch
            # keeps its key and the next writer sees whether it was committed.
            self._process = None
            _kill(process)
            raise


def batch_request(key: int, batch: Sequence[Observation]) -> bytes:
    """A batch as the writer reads it (store/writer/process.py): framed, ``marshal`` of
    its key and its rows. This is what the event loop does with each click's
    observation; the rest of the writing happens in the writer's process."""
    message = marshal.dumps((key, len(batch), observation_values(batch)))
    return FRAME.pack(len(message)) + message


async def _read_answer(stream: asyncio.StreamReader) -> Reply:
    (size,) = FRAME.unpack(await stream.readexactly(FRAME.size))
    key, error, dropped = marshal.loads(await stream.readexactly(size))
    return int(key), error, dropped


def _log_dropped(dropped: list[tuple[int, str]], rows: int) -> None:
    """One line per batch, each of its reasons once (at most three)."""
    reasons = sorted({reason for _, reason in dropped})
    log.error("%d of %d observations could not be stored and were left out of their "
              "batch: %s", len(dropped), rows, "; ".join(reasons[:3]))


async def end_child(process: asyncio.subprocess.Process, timeout: float, what: str) -> None:
    """End a child process that stops when its standard input closes (the observation
    writer, promotion's process): close its input, wait ``timeout`` seconds for it to finish
    the work in hand, then kill it. The wait goes on if the caller is cancelled meanwhile."""
    if process.returncode is not None:
        return
    assert process.stdin is not None
    process.stdin.close()
    try:
        await asyncio.shield(asyncio.wait_for(process.wait(), timeout))
    except TimeoutError:
        log.error("%s did not stop within %.0f s; killing it", what, timeout)
        _kill(process)
        await process.wait()


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
