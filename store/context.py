"""What promotion reads about a claimed batch of observations, in a handful of statements
for the whole batch instead of several per observation (docs/classification.md): the
clicked messages with their count of links, the clicked links, each observation's
neighbouring hits on its message, the message's honeypot hits, the address's fan-out over
recipients, and whether the message already had click events (and open events) before the
batch's first hit of it.

Each read is bounded as the classifier's rules are: at most ``hits_limit`` neighbours per
observation, ``HONEYPOT_HITS`` honeypot hits per message, and a fan-out counted up to
``fanout_cap`` messages, so that a message or an address hit by the thousand costs no
more."""

from __future__ import annotations

import functools
import json
import operator
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from store.backend import Database, Row, Tx
from store.dialect import DIALECTS
from store.events import EarlierClicks, HitRecord
from store.message_info import INFO_COLUMNS, message_info
from store.records import LinkRecord, MessageInfo, Observation

HONEYPOT_HITS = 100  # a message's honeypot hits read as context, at most

_HIT_COLUMNS = "o.id, o.at, o.link_index, o.addr_hash, o.user_agent"
_CLICK_ORDER = operator.itemgetter(1, 0)  # a HitRecord's (at, observation_id)


@dataclass(frozen=True)
class Windows:
    """How far around a click its context reaches, in microseconds."""

    hits_us: int  # the message's other hits
    fanout_us: int  # the address's hits on other messages
    fanout_cap: int
    honeypot_index: int
    hits_limit: int = 1000


@dataclass(frozen=True)
class BatchContext:
    messages: Mapping[str, MessageInfo]
    # by message: its links a person can click (the honeypot not counted)
    link_counts: Mapping[str, int]
    links: Mapping[tuple[str, int], LinkRecord]  # the clicked ones, by (message, index)
    hits: Mapping[int, tuple[HitRecord, ...]]  # by observation id, in click order
    fanout: Mapping[int, int]  # by observation id
    # by (message, opens): click (or open) events before the batch's first hit of it
    earlier: Mapping[tuple[str, bool], EarlierClicks]


class ContextStore:
    db: Database

    async def promotion_context(
        self, observations: Sequence[Observation], windows: Windows
    ) -> BatchContext:
        """The context of every observation of a claimed batch (each has its id). The
        statements run in one trip to the reader's thread, which does nothing but SQLite's
        work there; the records are made here."""
        if not observations:
            return BatchContext({}, {}, {}, {}, {}, {})
        messages = json.dumps(sorted({o.message_id for o in observations}))
        first: dict[str, Observation] = {}
        for o in sorted(observations, key=lambda o: (o.at, o.id or 0)):
            first.setdefault(o.message_id, o)
        sqls = _statements(self.db.dialect.name)
        statements = [
            (sqls[0], (messages,)),
            (sqls[1], (json.dumps(sorted({(o.message_id, o.link_index)
                                         for o in observations})),)),
            (sqls[2], (json.dumps([(o.id, o.message_id, o.at - windows.hits_us,
                                  o.at + windows.hits_us) for o in observations]),
                     windows.hits_limit - 1)),
            (sqls[3], (messages, windows.honeypot_index, HONEYPOT_HITS)),
            (sqls[4], (windows.fanout_cap,
                       json.dumps([(o.id, o.addr_hash, o.at - windows.fanout_us,
                                    o.at + windows.fanout_us) for o in observations]))),
            (sqls[5], (json.dumps([(o.message_id, o.at, o.id) for o in first.values()]),)),
        ]
        async def read(tx: Tx) -> list[list[Row]]:
            return [await tx.fetchall(sql, params) for sql, params in statements]

        found, links, near, bait, fanout, earlier = await self.db.read(read)
        return BatchContext(
            messages={info.id: info for info in map(message_info, found)},
            link_counts={r[0]: r[-1] for r in found},
            links={(r[0], r[1]): LinkRecord(r[1], r[2], r[3], bool(r[4])) for r in links},
            hits=_hits(observations, near, bait, windows.honeypot_index),
            fanout={r[0]: r[1] for r in fanout},
            earlier={(r[0], opens): EarlierClicks(bool(r[1 + 2 * opens]), bool(r[2 + 2 * opens]))
                     for r in earlier for opens in (False, True)},
        )


@functools.cache
def _statements(dialect: str) -> tuple[str, str, str, str, str, str]:
    """The six reads, with the batch's rows as JSON arrays read back by position."""
    d = DIALECTS[dialect]

    def at(index: int, sql_type: str = "TEXT") -> str:
        return d.json_at(index, sql_type)

    ids = d.json_values("?")
    # A message's links are the message's own rows, or its submission's when the copies
    # share one body (body_id). A newsletter has dozens: they are counted in SQL, and only
    # the clicked ones are read.
    shared = "m.body_id IS NOT NULL AND s.submission_id = m.submission_id"
    messages = (
        f"SELECT {INFO_COLUMNS}, (SELECT COUNT(*) FROM links l WHERE l.message_id = m.id"
        " AND l.honeypot = 0) + (SELECT COUNT(*) FROM submission_links s"
        f" WHERE {shared} AND s.honeypot = 0) FROM messages m WHERE m.id IN ({ids})"
    )
    # The clicked links: (message, link index) of each.
    links = (
        f"WITH c AS MATERIALIZED (SELECT {at(0)} AS message, {at(1, 'INTEGER')} AS link_index"
        f" FROM {d.json_rows()})"
        " SELECT c.message, l.link_index, l.destination, l.anchor_text, l.honeypot"
        " FROM c JOIN links l ON l.message_id = c.message AND l.link_index = c.link_index"
        " UNION ALL SELECT c.message, s.link_index, s.destination, s.anchor_text, s.honeypot"
        " FROM c JOIN messages m ON m.id = c.message"
        f" JOIN submission_links s ON {shared} AND s.link_index = c.link_index"
    )
    # Each observation's neighbours on its message within the window: (id, message,
    # start, end), at most ?2 + 1 of them, the first in click order. The last one kept is
    # found by walking the message's index to it, once per observation (its time then read
    # by its key: on PostgreSQL a second walk would sort again); numbering every neighbour
    # (ROW_NUMBER) would sort them all, the costliest part of the batch's reads on SQLite.
    near = (
        f"WITH w AS MATERIALIZED (SELECT {at(0, 'INTEGER')} AS oid, {at(1)} AS message,"
        f" {at(2, 'INTEGER')} AS start, {at(3, 'INTEGER')} AS stop FROM {d.json_rows('?1')}),"
        " k AS MATERIALIZED (SELECT w.*, (SELECT x.id FROM observations x"
        "  WHERE x.message_id = w.message AND x.at BETWEEN w.start AND w.stop"
        "  AND x.id != w.oid ORDER BY x.at, x.id LIMIT 1 OFFSET ?2) AS last_id FROM w),"
        " b AS MATERIALIZED (SELECT k.*, (SELECT y.at FROM observations y"
        "  WHERE y.id = k.last_id) AS last_at FROM k)"
        " SELECT b.oid, o.id, o.at, o.link_index, o.addr_hash, o.user_agent"
        " FROM b JOIN observations o ON o.message_id = b.message"
        "  AND o.at BETWEEN b.start AND b.stop AND o.id != b.oid"
        " WHERE b.last_id IS NULL OR o.at < b.last_at"
        "  OR (o.at = b.last_at AND o.id <= b.last_id)"
    )
    # The messages' honeypot hits at any time: a honeypot hit names its client, whenever
    # it came.
    bait = (
        "SELECT message_id, id, at, link_index, addr_hash, user_agent FROM ("
        f" SELECT o.message_id, {_HIT_COLUMNS}, ROW_NUMBER() OVER"
        "  (PARTITION BY o.message_id ORDER BY o.at, o.id) AS n"
        f" FROM observations o WHERE o.message_id IN ({ids})"
        " AND o.link_index = ?) bait WHERE n <= ?"
    )
    # How many distinct messages (each is one recipient's copy) each observation's address
    # hit within the window, counted up to the cap: (id, address hash, start, end).
    fanout = (
        f"SELECT {at(0, 'INTEGER')}, (SELECT COUNT(*) FROM (SELECT DISTINCT message_id"
        f" FROM observations WHERE addr_hash = {at(1)}"
        f" AND at BETWEEN {at(2, 'INTEGER')} AND {at(3, 'INTEGER')} LIMIT ?) hit)"
        f" FROM {d.json_rows()}"
    )
    # Whether each message has click events, then open events (link index -1), before its
    # first hit of the batch, of any kind and human-countable, the basis of
    # ``first_click`` and ``first_open``: (message, at, id).
    before = (f"message_id = {at(0)} AND (clicked_at < {at(1, 'INTEGER')}"
              f" OR (clicked_at = {at(1, 'INTEGER')}"
              f" AND observation_id < {at(2, 'INTEGER')}))")
    kinds = (" AND link_index >= 0", " AND link_index < 0")
    earlier = (
        f"SELECT {at(0)}, " + ", ".join(
            f"EXISTS (SELECT 1 FROM events WHERE {before}{kind}{human})"
            for kind in kinds for human in ("", " AND counts_for_metrics = 1"))
        + f" FROM {d.json_rows()}"
    )
    return messages, links, near, bait, fanout, earlier


def _hits(
    observations: Sequence[Observation], near: Sequence[Row], bait: Sequence[Row],
    honeypot_index: int,
) -> dict[int, tuple[HitRecord, ...]]:
    # One record per hit, however many of the batch's observations have it as neighbour.
    made: dict[int, HitRecord] = {}
    by_observation: dict[int, dict[int, HitRecord]] = defaultdict(dict)
    for oid, hid, at, link_index, addr_hash, user_agent in near:
        hit = made.get(hid)
        if hit is None:
            hit = made[hid] = HitRecord(hid, at, link_index, addr_hash, user_agent,
                                        link_index == honeypot_index)
        by_observation[oid][hid] = hit
    by_message: dict[str, list[HitRecord]] = defaultdict(list)
    for r in bait:
        by_message[r[0]].append(made.get(r[1]) or HitRecord(r[1], r[2], r[3], r[4], r[5],
                                                            True))
    out = {}
    for o in observations:
        assert o.id is not None
        hits = by_observation[o.id]
        for hit in by_message[o.message_id]:
            if hit.observation_id != o.id:
                hits.setdefault(hit.observation_id, hit)
        out[o.id] = tuple(sorted(hits.values(), key=_CLICK_ORDER))
    return out
