"""Open classification (docs/opens.md, docs/classification.md): the same pure classifier on
pixel requests, with real agent strings (their sources in tests/data/user_agents.toml and
below) and networks: Apple Mail Privacy Protection, Gmail's image proxy and its prefetch,
Yahoo's proxy, security gateways, opens before delivery, HTTP libraries, people."""

from __future__ import annotations

import dataclasses
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from relay.config.load import load_config
from tests.test_classify import AGENTS, HOUR, OLD_CHROME, SECOND, SENT
from tracker.classify.verdict import (
    GENERIC_BOT,
    GENUINE,
    PRIVACY_PROXY,
    SECURITY_SCANNER,
    ClickContext,
    Hit,
    Verdict,
    classify,
)

DELIVERED = SENT + 2 * SECOND
# An image loaded by desktop Chrome in webmail. Accept: MDN "List of default Accept values"
# (images, Chrome); Sec-Fetch-*: MDN Sec-Fetch-Dest ("image"), Sec-Fetch-Mode ("no-cors").
IMAGE_HEADERS = {"accept": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
                 "accept-language": "en-US,en;q=0.9", "sec-fetch-site": "cross-site",
                 "sec-fetch-mode": "no-cors", "sec-fetch-dest": "image"}
# Apple's MPP fetches with exactly this agent, from Apple's network (help.socketlabs.com,
# "Identifying Apple MPP opens"; Apple's 17.0.0.0/8 is ARIN's NET-17-0-0-0-1).
MPP_AGENT = "Mozilla/5.0"


def agent(name: str) -> str:
    return str(AGENTS[name]["user_agent"])


def opened(**changes: Any) -> ClickContext:
    """A person opening the mail in Apple Mail on a Mac, an hour after delivery."""
    base = ClickContext(method="GET", user_agent=agent("apple_mail_mac"),
                        headers={"accept": "image/webp,image/png,image/*;q=0.8",
                                 "accept-language": "en-GB,en;q=0.9"},
                        network=None, addr_hash="person", at_us=DELIVERED + HOUR,
                        sent_at_us=SENT, link_index=-1, honeypot=False, message_hits=(),
                        message_link_count=3, fanout_messages=1, opened=True,
                        delivered_at_us=DELIVERED)
    return dataclasses.replace(base, **changes)


def check(verdict: Verdict, classification: str, proxy_type: str | None, machine: bool) -> None:
    assert (verdict.classification, verdict.proxy_type, verdict.machine) == (
        classification, proxy_type, machine)
    assert verdict.counts_for_metrics is not machine


@pytest.mark.parametrize("name", ["apple_mail_mac", "apple_mail_iphone", "outlook_windows",
                                  "thunderbird", "chrome_windows", "iphone_safari"])
def test_people_opening_in_their_mail_client_or_webmail_are_genuine(name: str) -> None:
    headers = IMAGE_HEADERS if "chrome" in name else opened().headers
    verdict = classify(opened(user_agent=agent(name), headers=headers))
    check(verdict, GENUINE, None, False)
    assert verdict.reason_codes == ()


def test_apple_mpp_is_a_machine_privacy_proxy() -> None:
    # MPP fetches within minutes of delivery, from Apple's proxies.
    verdict = classify(opened(user_agent=MPP_AGENT, network="apple_mpp", headers={},
                              at_us=DELIVERED + 40 * SECOND))
    check(verdict, PRIVACY_PROXY, "apple_mpp", True)
    assert verdict.reason_codes == ("privacy_proxy", "image_proxy")


def test_the_shipped_apple_mpp_label_covers_apples_network() -> None:
    table = load_config(Path(__file__).parent.parent / "config.example.toml").networks
    assert table.label(ip_address("17.58.56.10")) == "apple_mpp"
    assert table.label(ip_address("17.0.0.1")) == "apple_mpp"
    assert table.label(ip_address("18.0.0.1")) != "apple_mpp"


def test_apple_mail_from_apples_own_network_is_not_mpp() -> None:
    verdict = classify(opened(network="apple_mpp"))  # a person at Apple: a real agent
    assert verdict.proxy_type != "apple_mpp" and not verdict.machine


def test_a_bare_agent_elsewhere_is_a_generic_bot() -> None:
    check(classify(opened(user_agent=MPP_AGENT, headers={})), GENERIC_BOT, None, True)


def test_gmail_image_proxy_is_a_human_open_from_googles_network() -> None:
    verdict = classify(opened(user_agent=agent("gmail_image_proxy"), network="google",
                              headers={"accept": "*/*"}))
    check(verdict, PRIVACY_PROXY, "gmail_image_proxy", False)
    assert "scanner_network:google" not in verdict.rules


def test_gmail_image_proxy_agent_elsewhere_is_less_certain() -> None:
    home = classify(opened(user_agent=agent("gmail_image_proxy"), network="google"))
    away = classify(opened(user_agent=agent("gmail_image_proxy"), network=None))
    assert home.probability < away.probability < 50
    assert "proxy_off_network:gmail_image_proxy" in away.rules
    assert classify(opened(user_agent=agent("gmail_image_proxy"), network="aws")).machine


def test_gmail_prefetch_is_machine() -> None:
    verdict = classify(opened(user_agent=agent("gmail_prefetch"), network="google",
                              headers={"accept": "*/*"}, at_us=DELIVERED + 3 * SECOND))
    check(verdict, PRIVACY_PROXY, "gmail_prefetch", True)


def test_yahoo_proxy_is_human_with_less_confidence() -> None:
    yahoo = classify(opened(user_agent=agent("yahoo_mail_proxy"), headers={}))
    gmail = classify(opened(user_agent=agent("gmail_image_proxy"), headers={},
                            network="google"))
    check(yahoo, PRIVACY_PROXY, "yahoo_image_proxy", False)
    assert gmail.probability < yahoo.probability < 50


@pytest.mark.parametrize("name", ["barracuda_sentinel", "google_safety", "nessus"])
def test_security_gateway_agents_are_scanners(name: str) -> None:
    check(classify(opened(user_agent=agent(name), headers={})), SECURITY_SCANNER, None, True)


def test_gateway_fetching_the_pixel_and_every_link_at_delivery_is_a_scanner() -> None:
    # Safe Links' detonation browser from Exchange Online Protection (docs/classification.md)
    at = DELIVERED + SECOND
    links = tuple(Hit(at + i * 300_000, i, "eop-0", OLD_CHROME, False) for i in range(3))
    for network in ("microsoft_eop", None):
        verdict = classify(opened(user_agent=OLD_CHROME, headers={}, network=network,
                                  addr_hash="eop-0", at_us=at, message_hits=links))
        check(verdict, SECURITY_SCANNER, None, True)
        assert {"burst", "all_links"} <= set(verdict.rules)


def test_a_person_opening_and_clicking_at_once_is_genuine() -> None:
    chrome = agent("chrome_windows")
    at = DELIVERED + HOUR
    clicks = (Hit(at + SECOND, 0, "person", chrome, False),
              Hit(at + 2 * SECOND, 1, "person", chrome, False))
    verdict = classify(opened(user_agent=chrome, headers=IMAGE_HEADERS, at_us=at,
                              message_hits=clicks))
    check(verdict, GENUINE, None, False)
    assert "person_in_a_hurry" in verdict.rules


@pytest.mark.parametrize("delivered", [None, DELIVERED + HOUR + SECOND])
def test_an_open_before_delivery_is_machine(delivered: int | None) -> None:
    verdict = classify(opened(delivered_at_us=delivered))
    check(verdict, GENERIC_BOT, None, True)
    assert "open_before_delivery" in verdict.rules and "timing" in verdict.reason_codes


@pytest.mark.parametrize("name", ["python_requests", "curl", "go_http_client", "okhttp",
                                  "headless_chrome"])
def test_http_libraries_are_machine(name: str) -> None:
    assert classify(opened(user_agent=agent(name), headers={"accept": "*/*"})).machine


def test_an_open_seconds_after_delivery_is_a_weak_hint_only() -> None:
    soon = classify(opened(at_us=DELIVERED + 5 * SECOND))
    check(soon, GENUINE, None, False)
    assert soon.rules == ("early_open",)
    assert classify(opened(at_us=DELIVERED + 5 * SECOND, network="aws")).machine
    assert not classify(opened(network="aws")).machine


def test_a_head_for_the_pixel_is_machine() -> None:
    assert classify(opened(method="HEAD")).machine


def test_a_persons_open_after_an_mpp_prefetch_is_genuine() -> None:
    mpp = Hit(DELIVERED + 30 * SECOND, -1, "apple", MPP_AGENT, False, opened=True)
    later = classify(opened(at_us=DELIVERED + HOUR, message_hits=(mpp,)))
    check(later, GENUINE, None, False)
    soon = classify(opened(at_us=DELIVERED + 32 * SECOND, message_hits=(mpp,)))
    check(soon, GENUINE, None, False)


def test_a_click_right_after_its_own_open_is_no_burst() -> None:
    chrome = agent("chrome_windows")
    at = DELIVERED + HOUR
    pixel = Hit(at - 500_000, -1, "person", chrome, False, opened=True)
    near = (pixel, Hit(at - 200_000, 1, "person", chrome, False))
    verdict = classify(dataclasses.replace(
        opened(), opened=False, user_agent=chrome, at_us=at, link_index=0,
        headers={**IMAGE_HEADERS, "sec-fetch-dest": "document", "sec-fetch-mode": "navigate"},
        message_hits=near))
    assert "burst" not in verdict.rules and "rapid_hits" not in verdict.rules
