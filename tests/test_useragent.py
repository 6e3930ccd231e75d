"""User-agent facts: device, client type and name from ua-parser on real agents, and the known-
agent index (curated strings + crawler-user-agents behind a literal prefilter), which must
find exactly what searching every pattern would."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import crawleruseragents
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.classify.agents import (
    CRAWLER_PATTERNS_IGNORED,
    CURATED_AGENTS,
    PREVIEW,
    PROXY,
    SCANNER,
    _anchors,
    _index,
    known_agents,
)
from tracker.classify.useragent import ClientInfo, agent_facts, client_info, preload

DATA = tomllib.loads((Path(__file__).parent / "data" / "user_agents.toml").read_text())
CRAWLERS = [e for e in crawleruseragents.CRAWLER_USER_AGENTS_DATA
            if e["pattern"] not in CRAWLER_PATTERNS_IGNORED]
ALL_PATTERNS = [re.compile(a.pattern) for a in CURATED_AGENTS] + [
    re.compile(e["pattern"]) for e in CRAWLERS]
PEOPLE = [a for a in DATA["agents"] if a["classification"] == "genuine"]


@pytest.mark.parametrize("agent", DATA["agents"], ids=lambda a: a["id"])
def test_client_info_of_real_agents(agent: Mapping[str, Any]) -> None:
    info = client_info(agent["user_agent"])
    for field in ("device_type", "client_type", "client_name"):
        if field in agent:
            assert getattr(info, field) == agent[field], (field, info)
    assert info.device_type in ("desktop", "mobile", "tablet")


@pytest.mark.parametrize(("user_agent", "expected"), [
    ("Mozilla/5.0 (Android 14; Tablet; rv:128.0) Gecko/128.0 Firefox/128.0",
     ClientInfo("tablet", "browser", "Firefox")),
    ("Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0",
     ClientInfo("mobile", "browser", "Firefox")),
    ("Mozilla/5.0 (Linux; Android 13; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Silk/126.3.5 like Chrome/126.0.6478.230 Safari/537.36",
     ClientInfo("tablet", "browser", "Amazon Silk")),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
     "like Gecko) CriOS/126.0.6478.153 Mobile/15E148 Safari/604.1",
     ClientInfo("mobile", "browser", "Chrome")),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240705.005; wv) AppleWebKit/537.36 "
     "(KHTML, like Gecko) Version/4.0 Chrome/126.0.6478.134 Mobile Safari/537.36",
     ClientInfo("mobile", "app", "Android WebView")),
    ("", ClientInfo("desktop", "bot", "Unknown")),
    ("Java/1.8.0_265", ClientInfo("desktop", "bot", "Java")),
])
def test_client_info_edge_cases(user_agent: str, expected: ClientInfo) -> None:
    assert client_info(user_agent) == expected


def test_preload_builds_the_caches() -> None:
    preload()
    assert _index.cache_info().currsize == 1


def test_client_info_is_cached() -> None:
    agent = DATA["agents"][0]["user_agent"] + " cache-probe"
    before = client_info.cache_info().hits
    assert client_info(agent) is client_info(agent)
    assert client_info.cache_info().hits == before + 1


@pytest.mark.parametrize("agent", PEOPLE, ids=lambda a: a["id"])
def test_no_known_agent_matches_a_person(agent: Mapping[str, Any]) -> None:
    assert known_agents(agent["user_agent"]) == []


def test_image_proxies_override_their_crawler_tags() -> None:
    gmail = agent_facts("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
                        "(via ggpht.com GoogleImageProxy)").match
    yahoo = agent_facts("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-"
                        "SLN28749.html").match
    assert gmail is not None and (gmail.kind, gmail.name) == (PROXY, "gmail_image_proxy")
    assert yahoo is not None and (yahoo.kind, yahoo.name) == (PROXY, "yahoo_image_proxy")


def test_curated_entries_come_before_crawler_entries() -> None:
    matches = known_agents("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)")
    assert [m.source for m in matches][:1] == ["curated"]
    assert (matches[0].kind, matches[0].name) == (PREVIEW, "slack")
    assert any(m.source.startswith("crawler:") for m in matches)


@pytest.mark.parametrize(("user_agent", "browser", "major"), [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/83.0.4103.116 Safari/537.36", "chrome", 83),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
     "firefox", 128),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; Trident/7.0; rv:11.0) like Gecko", "msie", 11),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
     "like Gecko) CriOS/126.0.6478.153 Mobile/15E148 Safari/604.1", "chrome_ios", 126),
    ("Barracuda Sentinel (EE)", None, None),
])
def test_claimed_browser_version(user_agent: str, browser: str | None, major: int | None) -> None:
    facts = agent_facts(user_agent)
    assert (facts.browser, facts.browser_major) == (browser, major)


@pytest.mark.parametrize(("text", "bare"), [
    ("Mozilla/5.0", True), ("Mozilla/4.0 (compatible)", True), ("Mozilla/5.0 (compatible;)", True),
    ("Mozilla/5.0 (X11)", False), ("Mozilla/5.0 Chrome/120", False),
])
def test_bare_mozilla(text: str, bare: bool) -> None:
    assert agent_facts(text).bare_mozilla is bare


# -- the prefilter finds what a full search finds -------------------------------------------------


@pytest.mark.parametrize(("pattern", "anchors"), [
    ("Googlebot\\/", ["Googlebot/"]),
    ("[wW]get", ["get"]),
    ("AdsBot-Google([^-]|$)", ["AdsBot-Google"]),
    ("Trend ?Micro", ["Trend"]),
    ("^WhatsApp/", ["WhatsApp/"]),
    ("Automaton|Newsify Feed Fetcher", ["Automaton", "Newsify Feed Fetcher"]),
    ("x{2}yz", ["yz"]),
    ("\\d+", None),
    ("a|\\w+", None),
])
def test_anchors_are_literals_every_match_contains(pattern: str,
                                                   anchors: list[str] | None) -> None:
    assert _anchors(pattern) == anchors


def test_every_crawler_instance_is_found_by_its_own_pattern() -> None:
    missed = []
    for entry in CRAWLERS:
        regex = re.compile(entry["pattern"])
        for instance in filter(regex.search, entry["instances"]):
            if entry["pattern"] not in {m.pattern for m in known_agents(instance)}:
                missed.append((entry["pattern"], instance))
    assert missed == []


def _brute_force(text: str) -> list[str]:
    return [p.pattern for p in ALL_PATTERNS if p.search(text)]


_fragments = [i for e in CRAWLERS for i in e["instances"][:1]] + [
    a["user_agent"] for a in DATA["agents"]]


@settings(derandomize=True, max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_fragments), st.text(max_size=12)), max_size=3)
       .map(" ".join))
def test_index_matches_a_search_of_every_pattern(text: str) -> None:
    assert [m.pattern for m in known_agents(text)] == _brute_force(text)


def test_curated_kinds_are_known() -> None:
    assert {a.kind for a in CURATED_AGENTS} >= {SCANNER, PREVIEW, PROXY}
    assert len({(a.pattern) for a in CURATED_AGENTS}) == len(CURATED_AGENTS)
