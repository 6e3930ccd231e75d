"""What reading a send request costs: a typical ``POST /v1/send`` body (four addresses with
display names, a 4 KB HTML part with 40 links, a text part, a header, metadata, a tag,
settings and a 1 KB attachment) from its JSON text to the checked request, and, for
scale, on to the built message.

    .venv/bin/python bench/api_validation.py [--runs 7] [--number 2000] [--tree DIR]

It measures whichever reader ``relay.api.send_request`` has; ``--tree`` takes the code from the
tree of an earlier commit (the hand-written reader before the pydantic shapes):

    git archive f5a463b relay store tracker | tar -x -C /tmp/before
    .venv/bin/python bench/api_validation.py --tree /tmp/before"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

HTML = "<html><body>" + "".join(
    f'<p>Paragraph {i} with <a href="https://acme.example/p/{i}?utm_source=mail">a link</a>.'
    "</p>" for i in range(40)) + "</body></html>"
TYPICAL = json.dumps({
    "from": "Acme Receipts <receipts@acme.example>",
    "to": ["Jane Doe <jane@example.org>"],
    "cc": ["accounts@example.org"],
    "reply_to": ["Help <help@acme.example>"],
    "subject": "Your receipt for order 42",
    "html": HTML,
    "text": "Thanks for your order: https://acme.example/orders/42",
    "headers": {"X-Campaign": "receipts-2026"},
    "metadata": {"order": "42", "customer": "1337"},
    "tag": "receipts",
    "settings": {"track_clicks": True},
    "attachments": [{"filename": "invoice.pdf", "content": "JVBERi0xLjQK" * 100}],
})


def reader() -> tuple[str, Callable[[Any], Any]]:
    from relay.api import send_request as api_message

    if hasattr(api_message, "SendMailRequest"):
        return "pydantic", api_message.SendMailRequest.model_validate
    return "hand-written", api_message.parse_send_request  # type: ignore[attr-defined]


def per_call_us(fn: Callable[[], object], runs: int, number: int) -> float:
    """The best over ``runs`` of the mean time of ``number`` calls, in µs: as timeit says,
    the slower runs measure the load of the machine, not the code."""
    times = []
    for _ in range(runs):
        gc.collect()
        times.append(timeit.timeit(fn, number=number) / number * 1e6)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--tree", type=Path, default=ROOT, help="where relay/ is")
    args = parser.parse_args()
    sys.path[0] = str(args.tree)  # not bench/, whose relay.py is no package
    from relay.api.send_mime import build_message

    name, read = reader()
    parse = per_call_us(lambda: json.loads(TYPICAL), args.runs, args.number)
    check = per_call_us(lambda: read(json.loads(TYPICAL)), args.runs, args.number)
    build = per_call_us(lambda: build_message(read(json.loads(TYPICAL))), args.runs,
                        args.number // 10)
    print(f"Python {platform.python_version()}, {name} reader; {len(TYPICAL)} bytes of JSON; "
          f"best of {args.runs} runs")
    print(f"json.loads alone            {parse:8.1f} µs")
    print(f"json.loads + check          {check:8.1f} µs  (the check: {check - parse:.1f} µs)")
    print(f"json.loads + check + build  {build:8.1f} µs")


if __name__ == "__main__":
    main()
