"""The shared bodies of large mail, in files beside the database (``<data>/bodies/``).

A body that comes to more than ``INLINE_BODY_BYTES`` with its copies' fills is written to a
file of its own, synced with its directory before the copies that need it are committed,
instead of into the database: writing it there would hold SQLite, and with it every
click's commit, for as long as the write takes. The file holds the pieces one after the
other, then each copy's fills; the database keeps the pieces' lengths and where each
copy's fills are (store/mail.py). Reading, writing and deleting run in threads, where the
system calls and the joins let the event loop run. The helpers below lay out the pieces
and the fills as the database and the files keep them."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from store.records import SharedBody

INLINE_BODY_BYTES = 256 * 1024
BODIES_DIR = "bodies"
JOIN_IN_THREAD_BYTES = 1024 * 1024  # a copy larger than this is joined in a thread
SYNC_BYTES = 1024 * 1024  # a body file is synced to disk in steps of this size

Span = tuple[int, int]  # (offset, size) in a body's file


class BodyFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def beside(cls, directory: Path | None) -> BodyFiles:
        """The body files of the database in ``directory`` (``Database.files_dir``)."""
        if directory is None:
            raise LookupError("this store keeps every body in its database")
        return cls(directory / BODIES_DIR)

    async def write(
        self, body_id: str, pieces: Sequence[bytes], fills: Sequence[Sequence[bytes]]
    ) -> list[Span]:
        return await asyncio.to_thread(write_body, self.path(body_id), pieces, fills)

    async def read(self, body_id: str, lengths: Sequence[int]) -> list[bytes]:
        return await asyncio.to_thread(self._read, body_id, lengths)

    async def read_fills(self, body_id: str, span: Span) -> list[bytes]:
        return unpack_fills(await asyncio.to_thread(self._read_span, body_id, span))

    async def delete(self, body_ids: Iterable[str]) -> None:
        await asyncio.to_thread(self._delete, list(body_ids))

    async def keep_only(self, body_ids: set[str]) -> int:
        """Delete every file but those of ``body_ids``; how many went."""
        return await asyncio.to_thread(self._keep_only, body_ids)

    def path(self, body_id: str) -> Path:
        """The file of a body (or of a mail on its way to a worker, ``<id>.in``)."""
        if not body_id or "/" in body_id or body_id.startswith("."):
            raise ValueError(f"not a body id: {body_id!r}")
        return self.directory / body_id

    def _read(self, body_id: str, lengths: Sequence[int]) -> list[bytes]:
        with open(self.path(body_id), "rb") as f:
            pieces = [f.read(length) for length in lengths]
        if [len(p) for p in pieces] != list(lengths):
            raise OSError(f"body file {body_id} is shorter than its pieces")
        return pieces

    def _read_span(self, body_id: str, span: Span) -> bytes:
        with open(self.path(body_id), "rb") as f:
            f.seek(span[0])
            data = f.read(span[1])
        if len(data) != span[1]:
            raise OSError(f"body file {body_id} is shorter than its fills")
        return data

    def _delete(self, body_ids: list[str]) -> None:
        for body_id in body_ids:
            with contextlib.suppress(FileNotFoundError):
                self.path(body_id).unlink()

    def _keep_only(self, body_ids: set[str]) -> int:
        if not self.directory.is_dir():
            return 0
        gone = 0
        for path in self.directory.iterdir():
            if path.name not in body_ids:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                gone += 1
        return gone


def write_body(
    path: Path, pieces: Sequence[bytes], fills: Sequence[Sequence[bytes]] = (), *,
    sync: bool = True,
) -> list[Span]:
    """The pieces one after the other in ``path``, then each copy's fills; with ``sync``,
    on disk on return, the directory's entry too. Where each copy's fills are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spans = []
    with open(path, "wb", buffering=0) as f:
        writer = _SyncedWriter(f, sync)
        for piece in pieces:
            writer.write(piece)
        for copy in fills:
            packed = pack_fills(copy)
            spans.append((writer.size, len(packed)))
            writer.write(packed)
        writer.sync()
    if sync:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return spans


class _SyncedWriter:
    """Writes to a file, synced every SYNC_BYTES: the disk is then never busy with this
    file for long, and the commits of the clicks (whose WAL shares the disk) get their
    turn in between; one sync of the whole file at the end held them for tens of ms."""

    def __init__(self, f: BinaryIO, sync: bool) -> None:
        self.f, self.sync_on = f, sync
        self.size = self.unsynced = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.f.write(view[: SYNC_BYTES - self.unsynced])
            assert written is not None
            view = view[written:]
            self.size += written
            self.unsynced += written
            if self.unsynced >= SYNC_BYTES:
                self.sync()

    def sync(self) -> None:
        if self.sync_on:
            os.fdatasync(self.f.fileno())
        self.unsynced = 0


def fills_size(fills: Iterable[Sequence[bytes]]) -> int:
    """The bytes the fills of some copies take, packed."""
    return sum(4 * len(copy) + sum(map(len, copy)) for copy in fills)


def body_size(body: SharedBody) -> int:
    return sum(body.piece_lengths())


async def joined(pieces: Sequence[bytes], fills: Sequence[bytes]) -> bytes:
    """One copy: the pieces with its fills between them; a large one joined in a thread."""
    if len(fills) != len(pieces) - 1:
        raise ValueError(f"{len(fills)} fills for a body of {len(pieces)} pieces")
    parts = [pieces[0]]
    for fill, piece in zip(fills, pieces[1:], strict=True):
        parts += [fill, piece]
    if sum(map(len, parts)) > JOIN_IN_THREAD_BYTES:
        return await asyncio.to_thread(b"".join, parts)
    return b"".join(parts)


def split_pieces(data: bytes, lengths: Sequence[int]) -> list[bytes]:
    pieces, pos = [], 0
    for length in lengths:
        pieces.append(data[pos : pos + length])
        pos += length
    return pieces


def pack_lengths(lengths: Sequence[int]) -> bytes:
    return b"".join(length.to_bytes(4, "little") for length in lengths)


def unpack_lengths(packed: bytes) -> list[int]:
    return [int.from_bytes(packed[at : at + 4], "little") for at in range(0, len(packed), 4)]


def pack_fills(fills: Sequence[bytes]) -> bytes:
    """A copy's fills, each a 4-byte little-endian length and the bytes."""
    return b"".join(len(fill).to_bytes(4, "little") + fill for fill in fills)


def unpack_fills(packed: bytes | None) -> list[bytes]:
    fills, pos = [], 0
    packed = packed or b""
    while pos < len(packed):
        size = int.from_bytes(packed[pos : pos + 4], "little")
        fills.append(packed[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return fills
