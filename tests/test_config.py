"""Configuration loading, validation and reload (config.example.toml)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from relay.config.live import LiveConfig
from relay.config.load import ConfigError, load_config
from tests.conftest import base_settings, write_config
from tracker.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.toml"


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.smtp.listen == "127.0.0.1:2525"
    assert config.http.listen == "127.0.0.1:8080"
    assert config.upstream.scheme == "maildir"
    assert config.store.path == ROOT / "data" / "clickrelay.db"
    assert config.store.lease_seconds == 60
    assert config.projects[0].routes[0].track_clicks


def test_example_config_mentions_every_key() -> None:
    """Every key the loader reads appears in the example, set or commented out."""
    text = EXAMPLE.read_text()
    mentioned = set(re.findall(r"^\s*(?:#\s*)?([a-z_]+)\s*=", text, flags=re.M))
    mentioned |= set(re.findall(r"[{,]\s*([a-z_]+)\s*=", text))
    mentioned |= set(
        re.findall(r"^\s*(?:#\s*)?\[\[?(?:[a-z_]+\.)*([a-z_]+)\]", text, flags=re.M)
    )
    source = "".join(p.read_text() for p in sorted((ROOT / "relay" / "config").glob("*.py")))
    read = set(re.findall(r'\.(?:get|text|positive|strings|table|tables)\("([a-z_]+)"', source))
    read |= set(re.findall(r'_address\(t, "([a-z_]+)"', source))
    assert read and read - mentioned == set()


def _write(tmp_path: Path, settings: dict[str, Any]) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(tomlkit.dumps(settings))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["smtp"].update(listn="x"), "smtp.listn: unknown key"),
        (lambda s: s["smtp"].update(max_recipients=0), "smtp.max_recipients: must be a positive"),
        (lambda s: s["smtp"].update(max_recipients="5"), "smtp.max_recipients: must be an integer"),
        (lambda s: s["upstream"].update(url="ftp://x"), "upstream.url: must be"),
        (lambda s: s["tracking"].update(signing_keys=[]), "tracking.signing_keys: needs at least"),
        (lambda s: s["tracking"]["signing_keys"][0].update(secret="short"),
         "tracking.signing_keys[0].secret: must be at least 32"),
        (lambda s: s["projects"][0]["routes"][2].update(track_clicks=True),
         "projects[0].routes[2].track_clicks: an inbound route never tracks"),
        (lambda s: s["projects"][0]["routes"][2].update(track_opens=True),
         "projects[0].routes[2].track_opens: an inbound route never tracks opens"),
        (lambda s: s["projects"][0]["routes"][1].update(slug="outgoing"),
         "projects[0].routes: duplicate slug 'outgoing'"),
        (lambda s: s["projects"][1].update(sid="acme1"), "projects: duplicate sid"),
        (lambda s: s["projects"][0]["routes"][0].update(type="bulk"),
         "projects[0].routes[0].type: must be one of"),
        (lambda s: s["tracking"].update(promotion_processes=0),
         "tracking.promotion_processes: must be a positive integer"),
        (lambda s: s["tracking"].update(promotion_processes=33),
         "tracking.promotion_processes: must be at most 32"),
        (lambda s: s["store"].update(lease_seconds=0.5), "store.lease_seconds: must be at least 1"),
        (lambda s: s["store"].update(lease_seconds=-1), "store.lease_seconds: must be positive"),
        (lambda s: s.update(extra={}), "extra: unknown key"),
        (lambda s: s["projects"][0].update(token="env:CLICKRELAY_TEST_UNSET"),
         "projects[0].token: environment variable CLICKRELAY_TEST_UNSET is not set"),
    ],
)
def test_bad_config_names_file_key_and_reason(tmp_path: Path, change: Any, message: str) -> None:
    settings = base_settings(tmp_path, 2525)
    change(settings)
    path = _write(tmp_path, settings)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_secrets_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = base_settings(tmp_path, 2525)
    settings["projects"][0]["token"] = "env:CLICKRELAY_TEST_TOKEN"
    monkeypatch.setenv("CLICKRELAY_TEST_TOKEN", "from-the-environment")
    config = load_config(_write(tmp_path, settings))
    assert config.projects[0].token == "from-the-environment"
    assert "from-the-environment" not in repr(config)


def test_invalid_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[smtp\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(path)


async def test_reload_applies_a_good_file_and_keeps_the_old_on_a_bad_one(tmp_path: Path) -> None:
    settings = base_settings(tmp_path, 2525)
    path = tmp_path / "c.toml"
    live = LiveConfig(write_config(path, settings), Metrics())
    settings["projects"][0]["routes"][0]["track_clicks"] = False
    write_config(path, settings)
    assert await live.reload()
    assert not live().projects[0].routes[0].track_clicks
    path.write_text(path.read_text().replace("[smtp]", "[smtp]\nbogus = 1"))
    assert not await live.reload()
    assert not live().projects[0].routes[0].track_clicks  # the running one is kept


async def test_the_promotion_processes_change_at_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = base_settings(tmp_path, 2525)
    path = tmp_path / "c.toml"
    live = LiveConfig(write_config(path, settings), Metrics())
    settings["tracking"]["promotion_processes"] = 3
    write_config(path, settings)
    assert await live.reload()
    assert "tracking.promotion_processes changed: it takes effect after a restart" in caplog.text


def test_check_config_command(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "relay.cli", "check-config", "--config",
                         str(EXAMPLE)], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    settings = base_settings(tmp_path, 2525)
    settings["api"]["team_tokn"] = "x"
    bad = subprocess.run([sys.executable, "-m", "relay.cli", "check-config", "--config",
                          str(_write(tmp_path, settings))], capture_output=True, text=True,
                         cwd=ROOT)
    assert bad.returncode == 2
    assert "api.team_tokn: unknown key" in bad.stderr


def test_check_config_warns_about_short_tokens(tmp_path: Path) -> None:
    """A token is all that guards sending and the API (docs/hostile-input.md): shorter than 32
    characters is worth a warning, not a refusal."""
    settings = base_settings(tmp_path, 2525)
    settings["projects"][0]["token"] = "x" * 31
    path = _write(tmp_path, settings)
    short = subprocess.run([sys.executable, "-m", "relay.cli", "check-config", "--config",
                            str(path)], capture_output=True, text=True, cwd=ROOT)
    assert short.returncode == 0, short.stderr
    assert (f"{path}: warning: projects[0].token (acme) is shorter than 32 characters"
            in short.stdout)
    settings["api"]["team_token"] = "t" * 32
    for i, project in enumerate(settings["projects"]):
        project["token"] = f"{i}" * 40
    long = subprocess.run([sys.executable, "-m", "relay.cli", "check-config", "--config",
                           str(_write(tmp_path, settings))], capture_output=True, text=True,
                          cwd=ROOT)
    assert long.returncode == 0, long.stderr
    assert "warning" not in long.stdout, long.stdout


def test_classification_table_tunes_the_rules(tmp_path: Path) -> None:
    settings = base_settings(tmp_path, 2525)
    settings["classification"] = {"version": "site-1", "burst_min_links": 4,
                                  "probabilities": {"early_click": 0}}
    config = load_config(_write(tmp_path, settings))
    assert config.classification.version == "site-1"
    assert config.classification.burst_min_links == 4
    assert config.classification.probabilities.early_click == 0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"burst_min_link": 3}, "classification.burst_min_link: unknown key"),
        ({"probabilities": {"fanout": 101}}, "classification.probabilities.fanout"),
    ],
)
def test_bad_classification_table_names_the_key(
    tmp_path: Path, table: dict[str, Any], message: str
) -> None:
    settings = base_settings(tmp_path, 2525)
    settings["classification"] = table
    path = _write(tmp_path, settings)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: {re.escape(message)}"):
        load_config(path)


def test_dashboard_accounts_are_checked_and_the_example_one_is_known(tmp_path: Path) -> None:
    from relay.config.dashboard import EXAMPLE_PASSWORD, hash_password

    example = load_config(EXAMPLE).dashboard
    assert [u.name for u in example.users] == ["admin"] and example.session_hours == 12
    assert example.example_users() == ["admin"] and "change-me" in EXAMPLE_PASSWORD
    settings = tomlkit.parse(EXAMPLE.read_text()).unwrap()
    settings["dashboard"]["users"][0]["password_hash"] = hash_password("another one")
    assert load_config(_write(tmp_path, settings)).dashboard.example_users() == []
    settings["dashboard"]["users"][0]["password_hash"] = "plain text"
    with pytest.raises(ConfigError, match=r"dashboard.users\[0\].password_hash: must be an "
                                          "argon2 hash"):
        load_config(_write(tmp_path, settings))
    settings["dashboard"]["users"] = [{"name": "a", "password_hash": hash_password("x")}] * 2
    with pytest.raises(ConfigError, match=r"dashboard\.users: duplicate name 'a'"):
        load_config(_write(tmp_path, settings))


def test_hash_password_command_reads_one_line_and_prints_a_hash() -> None:
    from relay.config.dashboard import verify_password

    done = subprocess.run([sys.executable, "-m", "relay.cli", "hash-password"],
                          input="pass word with spaces\nignored\n", capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith("$argon2id$") and verify_password(line, "pass word with spaces")
    empty = subprocess.run([sys.executable, "-m", "relay.cli", "hash-password"], input="",
                           capture_output=True, text=True, cwd=ROOT)
    assert empty.returncode == 2 and "one line on standard input" in empty.stderr


def test_start_warns_while_the_example_account_is_in_use(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    from relay.server import _warn_example_accounts

    _warn_example_accounts(load_config(EXAMPLE))
    assert "dashboard account(s) admin" in caplog.text and "example password" in caplog.text
