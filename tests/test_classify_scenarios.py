"""The click classifier, continued (docs/classification.md): the scenarios and the verdict
invariants."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_classify import (
    AGENTS,
    BROWSER,
    CHROME,
    DATA,
    HEADERS,
    HOUR,
    OLD_CHROME,
    SECOND,
    SENT,
    assert_consistent,
    click,
)
from tracker.classify.rules import DEFAULT_RULES, rules_from_mapping
from tracker.classify.verdict import (
    GENUINE,
    PRIVACY_PROXY,
    SECURITY_SCANNER,
    ClickContext,
    Hit,
    Verdict,
    classify,
)


def test_gmail_image_proxy_is_a_machine_privacy_proxy() -> None:
    verdict = classify(click(user_agent=AGENTS["gmail_image_proxy"]["user_agent"], headers={}))
    assert (verdict.classification, verdict.proxy_type) == (PRIVACY_PROXY, "gmail_image_proxy")
    assert verdict.reason_codes == ("privacy_proxy", "image_proxy")
    assert verdict.machine and not verdict.counts_for_metrics


def test_gmail_image_proxy_from_googles_network_stays_a_privacy_proxy() -> None:
    verdict = classify(click(user_agent=AGENTS["gmail_image_proxy"]["user_agent"], headers={},
                             network="google"))
    assert (verdict.classification, verdict.proxy_type) == (PRIVACY_PROXY, "gmail_image_proxy")
    assert "scanner_network:google" in verdict.rules
    bare = classify(click(user_agent="", headers={}, network="microsoft_eop"))
    assert bare.classification == SECURITY_SCANNER  # the network says more than no agent


def test_apple_private_relay_click_is_a_human_privacy_proxy() -> None:
    safari = AGENTS["iphone_safari"]["user_agent"]
    verdict = classify(click(user_agent=safari, headers=HEADERS["safari_navigation"],
                             network="apple_private_relay"))
    assert (verdict.classification, verdict.proxy_type) == (PRIVACY_PROXY, "apple_private_relay")
    assert not verdict.machine and not verdict.detected and verdict.counts_for_metrics
    assert verdict.reason_codes == ("privacy_proxy",)


def test_automated_hit_through_a_privacy_proxy_keeps_its_proxy_type() -> None:
    verdict = classify(click(method="HEAD", network="apple_private_relay"))
    assert verdict.classification == SECURITY_SCANNER and verdict.machine
    assert verdict.proxy_type == "apple_private_relay"


# -- timing, link patterns, fan-out ---------------------------------------------------------------


def test_early_but_normal_human_click_is_genuine() -> None:
    verdict = classify(click(at_us=SENT + 5 * SECOND))
    assert verdict.classification == GENUINE and not verdict.machine
    assert verdict.counts_for_metrics
    assert verdict.reason_codes == ("timing",) and verdict.rules == ("early_click",)


# Chrome's headers without a user activation: a navigation a script or automation started.
UNACTIVATED = {k: v for k, v in BROWSER.items() if k != "sec-fetch-user"}


def test_more_than_two_hits_within_a_second_are_rapid() -> None:
    at = SENT + HOUR
    two = (Hit(at - 300_000, 0, "person", CHROME, False),)
    assert classify(click(message_hits=two, headers=UNACTIVATED)).rules == ()
    three = (*two, Hit(at - 600_000, 0, "person", CHROME, False))
    verdict = classify(click(message_hits=three, headers=UNACTIVATED))
    assert verdict.rules == ("rapid_hits",) and verdict.classification == SECURITY_SCANNER


def hurried(links: int = 4, at: int = SENT + HOUR, **changes: Any) -> list[Verdict]:
    """A reader opening ``links`` links (every one of the message) in new tabs within two
    seconds, from a home connection with desktop Chrome's user-activated navigations."""
    hits = [Hit(at + i * 600_000, i, "home", CHROME, False) for i in range(links)]
    return [classify(click(at_us=h.at_us, link_index=h.link_index, addr_hash="home",
                           message_link_count=links, **changes,
                           message_hits=tuple(o for o in hits if o is not h)))
            for h in hits]


def test_a_reader_opening_four_links_in_new_tabs_within_two_seconds_is_genuine() -> None:
    for verdict in hurried():
        assert verdict.classification == GENUINE and verdict.counts_for_metrics
        assert {"burst", "person_in_a_hurry"} <= set(verdict.rules) and verdict.probability < 50
    # Seconds after sending too (early_click): still a person.
    assert not any(v.machine for v in hurried(at=SENT + 5 * SECOND))


@pytest.mark.parametrize("changes", [
    {"headers": UNACTIVATED},  # no user activation
    {"headers": {k: v for k, v in BROWSER.items() if k != "accept-language"}},
    {"network": "microsoft_eop"},
    {"network": "aws"},
    {"user_agent": OLD_CHROME},
    {"method": "HEAD"},
])
def test_the_same_burst_without_the_evidence_of_a_person_stays_machine(
    changes: dict[str, Any]
) -> None:
    at = SENT + HOUR
    agent = changes.get("user_agent", CHROME)
    hits = tuple(Hit(at + i * 600_000, i, "home", agent, False) for i in range(1, 4))
    verdict = classify(click(at_us=at, addr_hash="home", message_link_count=4,
                             message_hits=hits, **changes))
    assert verdict.machine and "person_in_a_hurry" not in verdict.rules


def test_a_burst_from_two_clients_is_no_hurried_reader() -> None:
    at = SENT + HOUR
    hits = (Hit(at + 300_000, 1, "home", CHROME, False),
            Hit(at + 600_000, 2, "elsewhere", CHROME, False))  # same agent, other address
    verdict = classify(click(at_us=at, addr_hash="home", message_hits=hits))
    assert verdict.machine and verdict.classification == SECURITY_SCANNER


def test_three_links_in_three_seconds_is_a_burst_two_is_not() -> None:
    at = SENT + HOUR
    hits = (Hit(at - 1_500_000, 1, "person", CHROME, False),
            Hit(at - 2_900_000, 2, "person", CHROME, False))
    assert classify(click(message_hits=hits, headers=UNACTIVATED)).machine
    assert "burst" in classify(click(message_hits=hits)).rules
    assert "burst" not in classify(click(message_hits=hits[:1])).rules
    spread = (Hit(at - 1_500_000, 1, "person", CHROME, False),
              Hit(at - 3_100_000, 2, "person", CHROME, False))
    assert "burst" not in classify(click(message_hits=spread)).rules


def test_every_link_hit_is_a_weak_link_pattern() -> None:
    at = SENT + HOUR
    hits = (Hit(at + 10 * SECOND, 1, "person", CHROME, False),
            Hit(at + 20 * SECOND, 2, "person", CHROME, False))
    verdict = classify(click(message_hits=hits, message_link_count=3))
    assert verdict.rules == ("all_links",) and not verdict.machine
    early = classify(click(at_us=SENT + 4 * SECOND, message_link_count=3, message_hits=tuple(
        dataclasses.replace(h, at_us=h.at_us - HOUR) for h in hits)))
    assert early.machine and set(early.rules) == {"all_links", "early_click"}


def test_fanout_needs_company() -> None:
    assert not classify(click(fanout_messages=6)).machine
    verdict = classify(click(fanout_messages=6, network="aws"))
    assert verdict.machine and set(verdict.rules) == {"fanout", "cloud_network:aws"}


def test_honeypot_hit_and_clicks_near_it_are_machine() -> None:
    trap = Hit(SENT + 3 * SECOND, 99, "eop-0", OLD_CHROME, True)
    hit = classify(click(user_agent=OLD_CHROME, addr_hash="eop-0", at_us=trap.at_us,
                         link_index=99, honeypot=True))
    assert hit.classification == SECURITY_SCANNER and "honeypot_hit" in hit.rules
    assert "link_pattern" in hit.reason_codes
    near = classify(click(at_us=SENT + 6 * SECOND, message_hits=(trap,)))
    assert near.machine and "near_honeypot" in near.rules
    later = classify(click(at_us=SENT + 60 * SECOND, message_hits=(trap,)))
    assert not later.machine and later.classification == GENUINE


# -- rules as data --------------------------------------------------------------------------------


def test_rules_from_mapping_tunes_thresholds_and_version() -> None:
    rules = rules_from_mapping({"burst_min_links": 4, "early_click_s": 0, "version": "site-2",
                                "probabilities": {"burst": 99}})
    at = SENT + HOUR
    hits = (Hit(at - SECOND, 1, "person", CHROME, False),
            Hit(at - 2 * SECOND, 2, "person", CHROME, False))
    assert "burst" not in classify(click(message_hits=hits), rules).rules
    assert classify(click(at_us=SENT + SECOND), rules).rules == ()
    assert classify(click(), rules).rules_version == "site-2"
    assert rules.probabilities.burst == 99 and rules.probabilities.head_request == 90


def test_rules_from_empty_mapping_are_the_defaults() -> None:
    assert rules_from_mapping({}) == DEFAULT_RULES


@pytest.mark.parametrize(("table", "key"), [
    ({"burst_windows": 3}, "burst_windows"),
    ({"burst_window_s": "3"}, "burst_window_s"),
    ({"burst_min_links": 2.5}, "burst_min_links"),
    ({"burst_min_links": True}, "burst_min_links"),
    ({"burst_min_links": 0}, "burst_min_links"),
    ({"rapid_window_s": 0}, "rapid_window_s"),
    ({"scanner_networks": "microsoft_eop"}, "scanner_networks"),
    ({"scanner_networks": ["ok", 3]}, "scanner_networks"),
    ({"version": ""}, "version"),
    ({"probabilities": 5}, "probabilities"),
    ({"probabilities": {"burts": 5}}, "probabilities.burts"),
    ({"probabilities": {"burst": 101}}, "probabilities.burst"),
    ({"probabilities": {"burst": 50.5}}, "probabilities.burst"),
])
def test_rules_from_mapping_rejects_bad_keys_naming_them(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=rf"^{key}: "):
        rules_from_mapping(table)


def test_network_lists_are_configurable() -> None:
    rules = rules_from_mapping({"scanner_networks": ["corp_gateway"], "cloud_networks": []})
    assert classify(click(network="corp_gateway"), rules).classification == SECURITY_SCANNER
    assert classify(click(network="microsoft_eop"), rules).rules == ()


# -- invariants -----------------------------------------------------------------------------------

_AGENT_STRINGS = [a["user_agent"] for a in DATA["agents"]] + [OLD_CHROME]
_hits = st.builds(Hit, at_us=st.integers(SENT, SENT + 120 * SECOND),
                  link_index=st.integers(0, 6), addr_hash=st.sampled_from(["a", "b", "c"]),
                  user_agent=st.sampled_from(_AGENT_STRINGS), honeypot=st.booleans())
_contexts = st.builds(
    ClickContext, method=st.sampled_from(["GET", "HEAD", "get"]),
    user_agent=st.sampled_from(_AGENT_STRINGS), headers=st.sampled_from(list(HEADERS.values())),
    network=st.sampled_from([None, "microsoft_eop", "aws", "apple_private_relay", "unknown",
                             "proxy:tor"]),
    addr_hash=st.sampled_from(["a", "b"]), at_us=st.integers(SENT - SECOND, SENT + 120 * SECOND),
    sent_at_us=st.just(SENT), link_index=st.integers(0, 6), honeypot=st.booleans(),
    message_hits=st.lists(_hits, max_size=12).map(tuple),
    message_link_count=st.integers(0, 7), fanout_messages=st.integers(1, 8))


@settings(derandomize=True, max_examples=300, deadline=None)
@given(_contexts)
def test_every_verdict_is_consistent_and_pure(ctx: ClickContext) -> None:
    verdict = classify(ctx)
    assert_consistent(verdict)
    assert classify(ctx) == verdict
    if ctx.network in ("apple_private_relay", "proxy:tor"):
        assert verdict.proxy_type is not None


@settings(derandomize=True, max_examples=200, deadline=None)
@given(_contexts)
def test_a_head_request_never_lowers_the_probability(ctx: ClickContext) -> None:
    get = classify(dataclasses.replace(ctx, method="GET"))
    head = classify(dataclasses.replace(ctx, method="HEAD"))
    assert head.probability >= get.probability and head.machine
