"""The click classifier on real agents and header sets (tests/data/user_agents.toml) and on
the scenarios of docs/classification.md: Safe Links bursts, a person after a burst,
early clicks, HEAD probes, prefetches, privacy proxies, honeypots; plus the rules table
and verdict invariants."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.classify.rules import DEFAULT_RULES, RULES_VERSION, rules_from_mapping
from tracker.classify.verdict import (
    CLASSIFICATIONS,
    GENUINE,
    LINK_PREVIEW,
    PRIVACY_PROXY,
    REASON_CODES,
    SECURITY_SCANNER,
    ClickContext,
    Hit,
    Verdict,
    classify,
)

DATA = tomllib.loads((Path(__file__).parent / "data" / "user_agents.toml").read_text())
AGENTS = {a["id"]: a for a in DATA["agents"]}
HEADERS: dict[str, dict[str, str]] = DATA["headers"]

SENT = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs
SECOND = 1_000_000
HOUR = 3600 * SECOND
CHROME = AGENTS["chrome_windows"]["user_agent"]
BROWSER = HEADERS["chrome_navigation"]
# Defender detonation browsers send a Chrome agent years behind (docs/classification.md;
# Safe Links scans from Microsoft ranges such as 40.107.0.0/16, labelled microsoft_eop here).
OLD_CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/83.0.4103.116 Safari/537.36")


def click(**changes: Any) -> ClickContext:
    """A plain person's click: desktop Chrome, full headers, an hour after sending."""
    base = ClickContext(method="GET", user_agent=CHROME, headers=BROWSER, network=None,
                        addr_hash="person", at_us=SENT + HOUR, sent_at_us=SENT, link_index=0,
                        honeypot=False, message_hits=(), message_link_count=5,
                        fanout_messages=1)
    return dataclasses.replace(base, **changes)


def safe_links_burst(start_us: int, links: int = 5) -> list[Hit]:
    """Safe Links fetching every link within ~1.2 s from two EOP addresses."""
    return [Hit(at_us=start_us + i * 300_000, link_index=i, addr_hash=f"eop-{i % 2}",
                user_agent=OLD_CHROME, honeypot=False) for i in range(links)]


def scanner_click(burst: list[Hit], n: int, network: str | None = "microsoft_eop") -> ClickContext:
    me = burst[n]
    return click(user_agent=me.user_agent, headers={"accept": "*/*"}, network=network,
                 addr_hash=me.addr_hash, at_us=me.at_us, link_index=me.link_index,
                 message_hits=tuple(h for h in burst if h is not me))


def assert_consistent(verdict: Verdict) -> None:
    assert 0 <= verdict.probability <= 100
    assert verdict.machine == verdict.detected == (verdict.probability >= 50)
    assert verdict.counts_for_metrics == (not verdict.machine)
    assert verdict.classification in CLASSIFICATIONS
    if not verdict.machine:
        assert verdict.classification in (GENUINE, PRIVACY_PROXY)
    assert list(verdict.reason_codes) == [c for c in REASON_CODES if c in verdict.reason_codes]
    assert len(set(verdict.rules)) == len(verdict.rules)
    assert verdict.rules_version == RULES_VERSION


# -- real agents, one plain click each ------------------------------------------------------------


@pytest.mark.parametrize("agent", DATA["agents"], ids=lambda a: a["id"])
def test_real_agent_is_classified(agent: Mapping[str, Any]) -> None:
    verdict = classify(click(user_agent=agent["user_agent"], headers=HEADERS[agent["headers"]]))
    assert verdict.classification == agent["classification"], verdict
    assert verdict.proxy_type == agent.get("proxy_type"), verdict
    if "reason_codes" in agent:
        assert list(verdict.reason_codes) == agent["reason_codes"], verdict
    human = agent["classification"] == GENUINE
    assert verdict.machine != human or agent["classification"] == PRIVACY_PROXY
    assert_consistent(verdict)


def test_plain_genuine_click_has_no_reasons() -> None:
    verdict = classify(click())
    assert verdict == Verdict(GENUINE, None, 0, False, False, True, (), (), RULES_VERSION)


def test_desktop_chrome_iphone_and_ipad_clicks_are_people() -> None:
    for agent in ("chrome_windows", "iphone_safari", "ipad_safari_17"):
        a = AGENTS[agent]
        verdict = classify(click(user_agent=a["user_agent"], headers=HEADERS[a["headers"]]))
        assert (verdict.classification, verdict.machine, verdict.reason_codes) == (
            GENUINE, False, ()), agent


# -- security scanners ----------------------------------------------------------------------------


def test_safe_links_burst_from_eop_is_security_scanner() -> None:
    burst = safe_links_burst(SENT + 2 * SECOND)
    for n in range(len(burst)):
        verdict = classify(scanner_click(burst, n))
        assert verdict.classification == SECURITY_SCANNER
        assert verdict.machine and not verdict.counts_for_metrics
        assert {"security_network", "timing", "sandbox"} <= set(verdict.reason_codes)
        assert {"scanner_network:microsoft_eop", "burst", "stale_browser:chrome_83"} <= set(
            verdict.rules)
        assert_consistent(verdict)


def test_burst_alone_marks_scanner_without_network_label() -> None:
    burst = safe_links_burst(SENT + 2 * SECOND)
    verdict = classify(scanner_click(burst, 2, network=None))
    assert verdict.classification == SECURITY_SCANNER
    assert "burst" in verdict.rules and "scanner_network:microsoft_eop" not in verdict.rules


def test_person_after_safe_links_burst_is_genuine() -> None:
    burst = safe_links_burst(SENT + 2 * SECOND)
    verdict = classify(click(at_us=SENT + 22 * SECOND, link_index=1, message_hits=tuple(burst)))
    assert verdict.classification == GENUINE
    assert not verdict.machine and verdict.counts_for_metrics
    assert verdict.rules == ("early_click",)  # 22 s after sending: a weak hint only


def test_person_with_the_scanners_agent_string_after_its_burst_is_genuine() -> None:
    # Reduced Chrome agents are identical across machines: a scanner sending a current one
    # must not drag a person's later click on the same message into its sweep.
    burst = [dataclasses.replace(h, user_agent=CHROME) for h in safe_links_burst(SENT + SECOND)]
    assert classify(scanner_click(burst, 1)).classification == SECURITY_SCANNER
    verdict = classify(click(at_us=SENT + 20 * SECOND, message_hits=tuple(burst)))
    assert verdict.classification == GENUINE and verdict.rules == ("early_click",)


def test_person_clicking_same_link_as_scanner_after_burst_is_genuine() -> None:
    burst = safe_links_burst(SENT + 2 * SECOND, links=3)
    later = [*burst, *safe_links_burst(SENT + 40 * SECOND, links=3)]  # a re-scan later on
    verdict = classify(click(at_us=SENT + 5 * 60 * SECOND, message_hits=tuple(later),
                             message_link_count=3))
    assert verdict.classification == GENUINE and verdict.rules == ()


def test_barracuda_sentinel_is_link_protection() -> None:
    verdict = classify(click(user_agent="Barracuda Sentinel (EE)", headers={}))
    assert verdict.classification == SECURITY_SCANNER
    assert verdict.reason_codes == ("link_protection",)
    assert verdict.rules == ("scanner_agent:barracuda_sentinel",)


def test_head_probe_is_machine() -> None:
    verdict = classify(click(method="HEAD"))
    assert verdict.classification == SECURITY_SCANNER and verdict.machine
    assert verdict.reason_codes == ("request_shape",) and verdict.rules == ("head_request",)


def test_scanner_network_label_with_kind_prefix() -> None:
    verdict = classify(click(network="scanner:acme_gateway"))
    assert verdict.classification == SECURITY_SCANNER
    assert verdict.rules == ("scanner_network:acme_gateway",)


# -- previews, bots, request shape ----------------------------------------------------------------


def test_imessage_preview() -> None:
    a = AGENTS["imessage"]
    verdict = classify(click(user_agent=a["user_agent"], headers=HEADERS["safari_navigation"]))
    assert verdict.classification == LINK_PREVIEW
    assert verdict.machine and verdict.reason_codes == ("known_bot",)
    assert verdict.rules == ("preview_agent:imessage",)


def test_prefetch_request_is_link_preview() -> None:
    verdict = classify(click(headers=HEADERS["chrome_prefetch"]))
    assert verdict.classification == LINK_PREVIEW and verdict.rules == ("prefetch_request",)


@pytest.mark.parametrize("user_agent", ["", "   ", "Mozilla/5.0", "Mozilla/4.0 (compatible)"])
def test_empty_or_bare_agent_is_generic_bot(user_agent: str) -> None:
    verdict = classify(click(user_agent=user_agent, headers={}))
    assert verdict.classification == "generic_bot" and verdict.machine
    assert verdict.reason_codes == ("request_shape",)


def test_modern_chrome_without_browser_headers_is_machine() -> None:
    verdict = classify(click(headers={"accept": "*/*"}))
    assert verdict.machine and verdict.classification == "generic_bot"
    assert verdict.rules == ("missing_accept_language", "missing_fetch_metadata")


def test_missing_fetch_metadata_alone_is_not_enough() -> None:
    headers = {"accept": "text/html", "accept-language": "de-DE,de;q=0.9"}
    verdict = classify(click(headers=headers))
    assert not verdict.machine and verdict.rules == ("missing_fetch_metadata",)


def test_safari_and_in_app_browsers_are_not_expected_to_send_fetch_metadata() -> None:
    lang = {"accept-language": "en"}
    for agent in ("iphone_safari", "instagram_android", "apple_mail_iphone"):
        verdict = classify(click(user_agent=AGENTS[agent]["user_agent"], headers=lang))
        assert verdict.rules == (), agent


def test_outlook_link_check_before_the_browser_does_not_taint_the_click() -> None:
    # Outlook probes a link with its Office agent, then opens the browser, all from one
    # address within a second: three hits, but only one of them is the person.
    probes = (Hit(SENT + HOUR - 400_000, 0, "person", "Microsoft Office Existence Discovery",
                  False),
              Hit(SENT + HOUR - 200_000, 0, "person",
                  "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; "
                  "Microsoft Outlook 16.0.5422; ms-office; MSOffice 16)", False))
    verdict = classify(click(message_hits=probes))
    assert verdict.classification == GENUINE and verdict.rules == ()
    probe = classify(click(user_agent=probes[0].user_agent, method="HEAD", headers={},
                           at_us=probes[0].at_us, message_hits=probes[1:]))
    assert probe.classification == LINK_PREVIEW and probe.machine


# -- privacy proxies ------------------------------------------------------------------------------


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
