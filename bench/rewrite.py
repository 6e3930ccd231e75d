"""Rewriting cost: the large corpus documents through ``rewrite_links``, against a bare
lexbor parse and serialise of the same text (``LexborHTMLParser(html).html``) and against
BeautifulSoup(lxml) doing the same rewrite (find the links, set href, ``str(soup)``).

    .venv/bin/python bench/rewrite.py [--runs 41]

All three run in this process, one after the other in a rotating order within each
run, and each reports the median of its runs; the ratios compare medians taken at the
same moment on the same machine."""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bs4
import lxml.etree
import selectolax
from bs4 import BeautifulSoup
from selectolax.lexbor import LexborHTMLParser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from relay.message.body import decode_text  # noqa: E402
from relay.message.mime import rewrite_html_parts  # noqa: E402
from relay.rewrite.links import Link, rewrite_links  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "corpus"
DOCUMENTS = [
    "html/mimekit-large-whatwg-spec-page.html",
    "mjml/racoon-bench.html",
    "html/sendwithus-goldstar-invoice.html",
    "html/sendwithus-meow-welcome.html",
    "html/cerberus-hybrid.html",
    "html/cerberus-responsive.html",
    "eml/mailparser-outofmemory-1mb-html.eml",
    "eml/spamscope-fr-newsletter-related.eml",
]
TRACKER = "https://pacme1.t.example/c/"


def mint(link: Link) -> str:
    return f"{TRACKER}{link.index}"


def load(name: str) -> str:
    """The document's HTML as the rewriter gets it (a message: its first HTML part)."""
    data = (CORPUS / name).read_bytes()
    if not name.endswith(".eml"):
        return decode_text(data, None)[0]
    found: list[str] = []

    def keep(html: str) -> str:
        found.append(html)
        return html

    rewrite_html_parts(data, keep)
    return found[0]


def clickrelay(html: str) -> str:
    return rewrite_links(html, mint, tracking_hosts=["t.example"]).html


def lexbor_bare(html: str) -> str:
    return LexborHTMLParser(html).html or ""


def beautifulsoup(html: str) -> str:
    soup = BeautifulSoup(html, "lxml")
    index = 0
    for element in soup.find_all(["a", "area"], href=True):
        href = str(element["href"]).strip()
        if href.lower().startswith(("http://", "https://")):
            element["href"] = f"{TRACKER}{index}"
            index += 1
    return str(soup)


CONTENDERS: dict[str, Callable[[str], str]] = {
    "clickrelay": clickrelay,
    "lexbor": lexbor_bare,
    "bs4": beautifulsoup,
}


def measure(html: str, runs: int) -> dict[str, float]:
    """Median seconds per contender; the order rotates every run so that none always
    runs first (cold caches) or last."""
    names = list(CONTENDERS)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        CONTENDERS[name](html)
    for run in range(runs):
        for name in names[run % len(names) :] + names[: run % len(names)]:
            gc.collect()  # the garbage BeautifulSoup leaves must not be collected on others' time
            start = time.perf_counter()
            CONTENDERS[name](html)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=41)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, selectolax {selectolax.__version__}, "
        f"beautifulsoup4 {bs4.__version__}, lxml {lxml.etree.__version__}; "
        f"median of {args.runs} runs"
    )
    print(
        f"{'document':44} {'KB':>6} {'links':>5} {'clickrelay':>10} {'lexbor':>8} "
        f"{'bs4':>8} {'÷lexbor':>8} {'÷bs4':>6}"
    )
    ratios = []
    for name in DOCUMENTS:
        html = load(name)
        links = len(rewrite_links(html, mint, tracking_hosts=["t.example"]).links)
        gc.collect()
        median = measure(html, args.runs)
        ratio = median["clickrelay"] / median["lexbor"]
        ratios.append(ratio)
        print(
            f"{name:44} {len(html.encode('utf-8', 'surrogateescape')) / 1024:6.0f} {links:5d} "
            f"{median['clickrelay'] * 1e3:8.2f}ms {median['lexbor'] * 1e3:6.2f}ms "
            f"{median['bs4'] * 1e3:6.1f}ms {ratio:7.2f}× "
            f"{median['clickrelay'] / median['bs4']:5.2f}×"
        )
    print(f"worst ratio to the bare lexbor parse + serialise: {max(ratios):.2f}×")


if __name__ == "__main__":
    main()
