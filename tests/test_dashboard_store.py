"""The dashboard's reads in the store (store/dashboard.py): the activity chart's settled
periods are counted once and kept, the periods still open or waiting for a promotion are
counted afresh, and nothing older than the retention horizon is served from what was kept."""

from __future__ import annotations

from store.store import Store

DAY = 86_400 * 1_000_000
NOW = 1_800_000_000 * 1_000_000 // DAY * DAY + DAY // 2  # midday
SINCE, UNTIL = NOW - NOW % DAY - 6 * DAY, NOW - NOW % DAY + DAY  # 7 whole days



async def click(store: Store, n: int, at: int, *, machine: bool = False) -> None:
    await store.db.write_statement(
        "INSERT INTO events (id, observation_id, message_id, project_id, link_index,"
        " destination, clicked_at, classification, probability, machine,"
        " counts_for_metrics, first_click, rules_version, created_at)"
        " VALUES (?, ?, ?, 'acme', 0, 'https://example.com/', ?, ?, 0, ?, ?, 0, 't', ?)",
        (f"e{n}", n, f"m{n % 2}", at, "security_scanner" if machine else "genuine",
         int(machine), int(not machine), at))


async def chart(store: Store, *, settled_before: int = NOW - 1,
                kept_since: int = NOW - 28 * DAY) -> dict[int, tuple[int, int, int]]:
    buckets = await store.click_activity("acme", SINCE, UNTIL, DAY,
                                         settled_before=settled_before, kept_since=kept_since)
    return {(b.start - SINCE) // DAY: (b.human, b.unique_human, sum(b.machine.values()))
            for b in buckets}


async def test_settled_periods_are_kept_and_open_ones_counted_afresh(
    store: Store
) -> None:
    for n, at in enumerate((SINCE + 3600, SINCE + 7200, SINCE + 2 * DAY, NOW - 60)):
        await click(store, n, at)
    await click(store, 9, SINCE + 2 * DAY + 5, machine=True)
    assert await chart(store) == {0: (2, 2, 0), 2: (1, 1, 1), 6: (1, 1, 0)}
    await store.db.write_statement("DELETE FROM events")
    # Days 0 and 2 ended before settled_before: kept. Today is counted again: empty now.
    assert await chart(store) == {0: (2, 2, 0), 2: (1, 1, 1)}
    # Past the retention horizon, what was kept is not served: counted again.
    assert await chart(store, kept_since=SINCE + DAY) == {2: (1, 1, 1)}


async def test_a_period_with_a_click_still_to_promote_is_not_kept(store: Store) -> None:
    await click(store, 1, SINCE + 3600)
    assert await chart(store, settled_before=SINCE + 1800) == {0: (1, 1, 0)}
    await store.db.write_statement("DELETE FROM events")
    assert await chart(store) == {}
