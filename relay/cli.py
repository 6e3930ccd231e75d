"""The ``clickrelay`` command line: serve, check-config, spool inspection, hash-password
for the dashboard's accounts, and store copy (one store's rows into a new one)."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from relay import logsetup
from relay.config.dashboard import hash_password
from relay.config.load import MIN_TOKEN_LENGTH, Config, ConfigError, load_config
from relay.delivery.spool import SPOOL_ACTIONS, act_on_copy
from relay.server import serve
from relay.store_copy import store_copy
from store.store import Store
from store.writer.client import ObservationWriteError

DEFAULT_CONFIG = "config.example.toml"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logsetup.configure(args.log_level.upper())
    if args.command == "hash-password":
        return _hash_password()
    if args.command == "store":
        try:
            return asyncio.run(store_copy(args.source, args.target))
        except KeyboardInterrupt:  # the target's one transaction was never committed
            print("clickrelay: store copy interrupted: the target holds no rows",
                  file=sys.stderr)
            return 130
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"clickrelay: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{args.config}: ok ({len(config.projects)} projects, "
              f"{sum(len(p.routes) for p in config.projects)} routes)")
        for name in config.short_tokens():
            print(f"{args.config}: warning: {name} is shorter than {MIN_TOKEN_LENGTH} "
                  "characters: use a long random token (e.g. openssl rand -hex 32)")
        return 0
    if args.command == "serve":
        try:
            asyncio.run(serve(config))
        except (OSError, sqlite3.Error, ObservationWriteError) as exc:
            # What stops the start: a port taken, a database or directory that cannot be
            # opened. Said in one line; everything started so far has been stopped.
            print(f"clickrelay: cannot serve: {exc}", file=sys.stderr)
            return 1
        return 0
    return asyncio.run(_spool(config, args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clickrelay", description=__doc__)
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the SMTP relay, the tracker and the workers"),
        ("check-config", "validate a configuration file and exit"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", default=DEFAULT_CONFIG)
    sub.add_parser("hash-password", help="read a password as one line from standard input "
                   "and print its argon2 hash for [[dashboard.users]] password_hash")
    spool = sub.add_parser("spool", help="show the spool; retry or drop a queued copy")
    spool.add_argument("--config", default=DEFAULT_CONFIG)
    spool.add_argument("action", choices=["list", "show", *SPOOL_ACTIONS], nargs="?",
                       default="list")
    spool.add_argument("message_id", nargs="?")
    store = sub.add_parser("store", help="work on a store without a configuration file")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    copy = store_sub.add_parser(
        "copy", help="copy every row of a store into a new, empty one (e.g. SQLite to "
        "PostgreSQL); stop the source's node first")
    for flag, dest in (("--from", "source"), ("--to", "target")):
        copy.add_argument(flag, dest=dest, required=True, metavar="URL",
                          help="sqlite:///PATH, postgresql://user:password@host/db, or env:NAME")
    return parser


def _hash_password() -> int:
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        print("clickrelay hash-password: give the password as one line on standard input",
              file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


async def _spool(config: Config, args: argparse.Namespace) -> int:
    store = await Store.open(config.store.where)
    try:
        if args.action == "list":
            return await _spool_list(store)
        if not args.message_id:
            print(f"clickrelay spool {args.action}: a message id is required", file=sys.stderr)
            return 2
        if args.action == "show":
            return await _spool_show(store, args.message_id)
        if not await act_on_copy(store, args.action, args.message_id):
            print(f"clickrelay: no queued message {args.message_id}", file=sys.stderr)
            return 1
        print(f"{args.action}: {args.message_id}")
        return 0
    finally:
        await store.close()


async def _spool_list(store: Store) -> int:
    summary = await store.spool_summary(time.time_ns() // 1000)
    print(f"queued {summary.queued} (in delivery {summary.claimed}), "
          f"delivered {summary.delivered}, failed {summary.failed}")
    for m in await store.list_queued():
        print(f"{m.id}  {_time(m.created_at)}  attempts={m.attempts}  "
              f"next={_time(m.next_attempt_at)}  to={m.rcpt_to}  {m.last_error or ''}")
    return 0


async def _spool_show(store: Store, message_id: str) -> int:
    message = await store.get_message(message_id)
    if message is None:
        print(f"clickrelay: no message {message_id}", file=sys.stderr)
        return 1
    print(f"{message.id} {message.status} from={message.mail_from} to={message.rcpt_to} "
          f"route={message.route_id} subject={message.subject!r}")
    for a in await store.delivery_attempts(message_id):
        print(f"  attempt {a.attempt} {_time(a.at)} {a.outcome} {a.code or ''} {a.detail or ''}")
    return 0


def _time(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


if __name__ == "__main__":
    sys.exit(main())
