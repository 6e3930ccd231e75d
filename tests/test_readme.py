"""The README's first steps run as written: its Python snippet, against clickrelay serving
the shipped config.example.toml (on free ports, in a temporary directory), prints the
``queued as`` id; the delivered copy's link is the one the README shows and redirects;
and the README's ``sed`` line makes a configuration whose links any HTTP client follows."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import aiohttp
import tomlkit

from relay.config.load import load_config
from relay.server import running
from tests.conftest import wait_until
from tests.redirecting import click

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SNIPPET = re.search(r"\.venv/bin/python - <<'PY'\n(.*?)\nPY\n", README, re.S)
SED = re.search(r"sed 's\|(.*?)\|(.*?)\|' \\\n\s+config\.example\.toml > my\.toml", README)
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9a-f-]{36})$")
LINK = re.compile(r"""http://[^\s"'<>]+/c/[A-Za-z0-9_.\-]+""")


def example_config(directory: Path, text: str) -> Path:
    """The example's text with its listeners on free ports, in ``directory``."""
    document = tomlkit.parse(text)
    for table in ("smtp", "http"):
        document[table]["listen"] = "127.0.0.1:0"  # type: ignore[index]
    path = directory / "config.toml"
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    return path


async def run_snippet(smtp_port: int) -> str:
    assert SNIPPET is not None, "the README's Python snippet is gone"
    code = SNIPPET.group(1).replace('"127.0.0.1", 2525', f'"127.0.0.1", {smtp_port}')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate(code.encode())
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


def delivered_link(directory: Path) -> str | None:
    for path in (directory / "data" / "outbox" / "new").glob("*"):
        found = LINK.findall(path.read_text(encoding="utf-8", errors="replace"))
        if found:
            return str(found[0])
    return None


async def test_the_readme_snippet_against_the_example_config(tmp_path: Path) -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    async with running(load_config(example_config(tmp_path, text))) as relay:
        printed = await run_snippet(relay.smtp_port)
        assert QUEUED.match(printed), printed
        link = await wait_until(lambda: delivered_link(tmp_path))
        assert link.startswith("http://pacme1.t.localhost:8080/c/")  # as the README says
        answer = await click(relay, link)
        assert (answer.status, answer.headers["Location"]) == (302, "https://example.com/welcome")


async def test_the_readme_config_for_any_http_client(tmp_path: Path) -> None:
    assert SED is not None, "the README's sed line is gone"
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    changed = re.sub(SED.group(1).replace("^", "(?m)^", 1), SED.group(2), text)
    assert changed != text  # the sed line matches the shipped file
    async with running(load_config(example_config(tmp_path, changed))) as relay:
        assert QUEUED.match(await run_snippet(relay.smtp_port))
        link = await wait_until(lambda: delivered_link(tmp_path))
        assert link.startswith("http://127.0.0.1:8080/c/")
        path = link.removeprefix("http://127.0.0.1:8080")
        # A client that resolves names itself; only the port differs from the link.
        async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{relay.http_port}{path}", allow_redirects=False
        ) as response:
            assert response.status == 302
            assert response.headers["Location"] == "https://example.com/welcome"
