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

from tracker.classify.rules import RULES_VERSION
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
