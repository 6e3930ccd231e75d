"""Nodes: what one node on SQLite, one node on PostgreSQL and two nodes sharing one
PostgreSQL database take in clicks and in mail, measured in one run (docs/deployment.md,
docs/performance.md "Several nodes").

    .venv/bin/python bench/nodes.py [--runs 3] [--requests 20000] [--connections 50]
        [--messages 100] [--clients 4] [--only abc] [--node-cpus 0.5]
        [--postgres postgresql://user@host:5432/db]

Every node is a real ``clickrelay serve`` process with a configuration of its own that
differs from the others' only in its listening ports (as behind a load balancer); each
configuration starts on a fresh SQLite file or a fresh PostgreSQL schema (dropped at the
end). The runs take the configurations in turn (a, b, c, a, b, c, …), so that a change in
the machine's load falls on all of them; the median and the spread of the runs are
reported, with the ratios of the medians against one node on SQLite.

- **mail**: 100 KB newsletters (quoted-printable HTML with a text alternative, bench/relay.py's
  message) sent by ``--clients`` SMTP connections dealt over the nodes, each to one
  recipient, delivered to an SMTP sink in this process: copies per second from the first
  submission until the sink holds every copy.
- **clicks**: distinct signed links requested at saturation by bench/loadgen.py's generator,
  its connections dealt over the nodes' HTTP ports: redirects per second. After the nodes
  stop, the stored observations are counted: every 302 must have one (committed before
  its answer). ``settle_seconds`` is an hour, so promotion does not run while measured.

The machine's CPU use during the click round (``/proc/stat``, all processes: the nodes,
PostgreSQL, the generator, anything else running) is reported beside it, so that a run shows
whether the cores were the limit; and the CPU time per click of the nodes' processes and of
a local PostgreSQL server's (every process of the ``postgres`` user, so whatever else the
server does meanwhile too), which moves less with the machine's load than the rates do.

On one machine the nodes share its cores with each other, with PostgreSQL and with the load
generator: a second node then adds no CPU, it only splits the work. ``--node-cpus N`` gives
every node (with the processes it starts) a CPU quota of N cores of its own, in a control
group, as if each ran on a machine of N cores: what a node adds can then be measured on one
machine, as long as the quotas leave room for PostgreSQL and the generator. It needs root and
the ``cpu`` controller (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import pwd
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
import asyncpg
import tomlkit
from aiosmtpd.smtp import SMTP

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import Round, load_generator  # noqa: E402
from bench.redirect import (  # noqa: E402
    children_cpu,
    click_requests,
    free_port,
    thread_cpu,
    write_config,
)
from bench.relay import TOKEN, Counter, newsletter, wait_listening  # noqa: E402
from tests.postgres import fresh_schema, server_url  # noqa: E402

CONFIGURATIONS = (("a", "1 node, SQLite", "sqlite", 1), ("b", "1 node, PostgreSQL", "pg", 1),
                  ("c", "2 nodes, PostgreSQL", "pg", 2))


@dataclass(frozen=True)
class Node:
    process: subprocess.Popen[bytes]
    smtp_port: int
    http_port: int


@dataclass(frozen=True)
class Result:
    mail_rate: float
    click_rate: float
    redirects: int
    stored: int
    statuses: dict[int, int]
    busy: float  # share of the machine's CPU time used during the click round
    node_us: float  # CPU µs per click of the nodes (their child processes included)
    postgres_us: float  # of the local PostgreSQL server's processes (0 on SQLite)


def node_config(tmp: Path, store_url: str, sink_port: int, settle: float) -> Path:
    """bench/redirect.py's configuration (one project, links of its host), here with mail
    delivered to the sink and the store at ``store_url``."""
    path = write_config(tmp, free_port(), settle=settle)
    settings = tomlkit.parse(path.read_text())
    settings["upstream"] = {"url": f"smtp://127.0.0.1:{sink_port}", "concurrency": 8}
    settings["store"] = {"url": store_url}
    path.write_text(tomlkit.dumps(settings))
    return path


def ports_of(path: Path) -> tuple[int, int]:
    settings = tomlkit.parse(path.read_text())
    return (int(str(settings["smtp"]["listen"]).rpartition(":")[2]),  # type: ignore[index]
            int(str(settings["http"]["listen"]).rpartition(":")[2]))  # type: ignore[index]


def serve(path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "relay.cli", "--log-level", "error",
                             "serve", "--config", str(path)], cwd=ROOT)


class CpuQuota:
    """A control group of its own for each node, limited to ``cpus`` cores; the processes
    a node starts later (promotion, the observation writer, submission workers) are born in
    it. Removed when the bench ends."""

    def __init__(self, cpus: float) -> None:
        v2 = Path("/sys/fs/cgroup")
        if (v2 / "cgroup.controllers").exists():
            self.root, self.v2 = v2, True
        else:
            self.root, self.v2 = v2 / "cpu", False
        if not (self.root / "cgroup.procs").exists():
            raise SystemExit(f"--node-cpus: no cpu control group at {self.root}")
        self.cpus = cpus
        self.groups: list[Path] = []
        self.made = 0

    def place(self, pid: int) -> None:
        group = self.root / f"clickrelay-bench-{os.getpid()}-{self.made}"
        group.mkdir()
        self.made += 1
        self.groups.append(group)
        period = 100_000
        if self.v2:
            (group / "cpu.max").write_text(f"{int(self.cpus * period)} {period}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(period))
            (group / "cpu.cfs_quota_us").write_text(str(int(self.cpus * period)))
        (group / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        """Once the nodes have ended; a group whose last processes are still ending is
        left for the next call (the bench's end)."""
        kept = []
        for group in self.groups:
            try:
                group.rmdir()
            except OSError:
                kept.append(group)
        self.groups = kept


@contextlib.asynccontextmanager
async def nodes(tmp: Path, store_url: str, count: int, sink_port: int,
                settle: float, quota: CpuQuota | None = None) -> AsyncIterator[list[Node]]:
    """``count`` nodes on one store, stopped with SIGTERM at the end (as a service
    manager stops them)."""
    started: list[Node] = []
    try:
        for i in range(count):
            folder = tmp / f"node{i}"
            folder.mkdir()
            path = node_config(folder, store_url, sink_port, settle)
            smtp_port, http_port = ports_of(path)
            started.append(Node(serve(path), smtp_port, http_port))
            if quota is not None:  # before the node starts its own processes
                quota.place(started[-1].process.pid)
            await wait_listening(smtp_port)
        yield started
    finally:
        for node in started:
            node.process.send_signal(signal.SIGTERM)
        for node in started:
            await asyncio.to_thread(node.process.wait, 120)
        if quota is not None:
            quota.remove()


async def send_mail(ports: list[int], counter: Counter, message: bytes, total: int,
                    clients: int) -> float:
    """Copies per second: ``total`` messages over ``clients`` connections dealt over the
    nodes, until the sink holds every copy."""
    counter.count, counter.target = 0, total
    counter.event.clear()

    async def client(port: int, n: int) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
            await smtp.login("bench", TOKEN)
            for _ in range(n):
                await smtp.sendmail("news@acme.test", ["reader@example.org"], message)

    started = time.perf_counter()
    await asyncio.gather(*(client(ports[i % len(ports)], total // clients)
                           for i in range(clients)))
    await asyncio.wait_for(counter.event.wait(), 600)
    return total / (time.perf_counter() - started)


def process_cpu(pids: list[int]) -> float:
    """CPU seconds so far of processes and their children (bench/redirect.py's readings)."""
    return sum(sum(thread_cpu(pid).values()) + sum(children_cpu(pid).values())
               for pid in pids)


def postgres_cpu() -> float:
    """CPU seconds so far of the local PostgreSQL server: every process of the ``postgres``
    user (0 where there is none)."""
    try:
        uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        return 0.0
    total = 0.0
    for name in os.listdir("/proc"):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid:
                total += sum(thread_cpu(int(name)).values())
    return total


def cpu_times() -> tuple[int, int]:
    """The machine's (busy, total) jiffies so far."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return sum(values) - idle, sum(values)


async def stored_observations(kind: str, url: str) -> int:
    if kind == "sqlite":
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            return int(db.execute("SELECT COUNT(*) FROM observations").fetchone()[0])
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT COUNT(*) FROM observations"))
    finally:
        await conn.close()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.message = newsletter("qp")
        self.requests = click_requests(2000)
        self.counter = Counter()
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.generator = context.Process(target=load_generator, args=(child,))
        self.quota = CpuQuota(args.node_cpus) if args.node_cpus else None

    async def load(self, ports: list[int], total: int) -> Round:
        self.pipe.send((ports, self.requests, total, self.args.connections, 0.0))
        result: Round = await asyncio.to_thread(self.pipe.recv)
        return result

    async def run(self, kind: str, count: int, sink_port: int) -> Result:
        async with contextlib.AsyncExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            url = (f"sqlite:///{tmp / 'clickrelay.db'}" if kind == "sqlite"
                   else await stack.enter_async_context(fresh_schema(self.args.postgres)))
            async with nodes(tmp, url, count, sink_port, self.args.settle,
                             self.quota) as started:
                smtp = [n.smtp_port for n in started]
                http = [n.http_port for n in started]
                clients = self.args.clients
                await send_mail(smtp, self.counter, self.message, clients * 2, clients)
                mail = await send_mail(smtp, self.counter, self.message,
                                       self.args.messages - self.args.messages % clients,
                                       clients)
                warm = await self.load(http, 2000)
                pids = [n.process.pid for n in started]
                before = cpu_times(), process_cpu(pids), postgres_cpu()
                clicks = await self.load(http, self.args.requests)
                after = cpu_times(), process_cpu(pids), postgres_cpu()
            stored = await stored_observations(kind, url)
        redirects = warm.statuses.get(302, 0) + clicks.statuses.get(302, 0)
        (busy_after, total_after), (busy_before, total_before) = after[0], before[0]
        busy = (busy_after - busy_before) / max(1, total_after - total_before)
        per_click = 1e6 / self.args.requests
        return Result(mail, clicks.rps, redirects, stored, clicks.statuses, busy,
                      (after[1] - before[1]) * per_click,
                      (after[2] - before[2]) * per_click if kind == "pg" else 0.0)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20_000, help="clicks per round")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--messages", type=int, default=100, help="newsletters per round")
    parser.add_argument("--clients", type=int, default=4, help="SMTP connections")
    parser.add_argument("--settle", type=float, default=3600.0)
    parser.add_argument("--only", default="abc", help="the configurations to run (a, b, c)")
    parser.add_argument("--node-cpus", type=float, default=0.0,
                        help="a CPU quota of this many cores for each node (0: none)")
    parser.add_argument("--postgres", default=server_url(),
                        help="a PostgreSQL database to make the schemas in")
    args = parser.parse_args()
    bench = Bench(args)
    bench.generator.start()
    sink = await asyncio.get_running_loop().create_server(
        lambda: SMTP(bench.counter, decode_data=False), "127.0.0.1", 0)
    sink_port = sink.sockets[0].getsockname()[1]
    results: dict[str, list[Result]] = {}
    try:
        for run in range(args.runs):
            for key, name, kind, count in CONFIGURATIONS:
                if key not in args.only:
                    continue
                result = await bench.run(kind, count, sink_port)
                results.setdefault(key, []).append(result)
                print(f"run {run + 1} {name:>20}: {result.mail_rate:5.1f} copies/s, "
                      f"{result.click_rate:6.0f} clicks/s, CPU busy {result.busy:.0%}, "
                      f"CPU per click: nodes {result.node_us:.0f} µs, PostgreSQL "
                      f"{result.postgres_us:.0f} µs, "
                      f"{result.redirects} redirects, {result.stored} stored", flush=True)
    finally:
        bench.pipe.send(None)
        bench.generator.join()
        sink.close()
        if bench.quota is not None:
            await asyncio.sleep(1)  # the nodes' last processes end
            bench.quota.remove()
    report(args, bench.message, results)


def report(args: argparse.Namespace, message: bytes, results: dict[str, list[Result]]) -> None:
    links = message.count(b"href=")
    print(f"\n{args.runs} runs; mail: {args.messages} newsletters of {len(message)} bytes "
          f"(quoted-printable HTML + text, {links} links) on {args.clients} SMTP connections; "
          f"clicks: {args.requests} per round on {args.connections} keep-alive connections; "
          f"cpus={os.cpu_count()}, python {sys.version.split()[0]}"
          + (f"; each node limited to {args.node_cpus} cores" if args.node_cpus else ""))
    base: dict[str, float] = {}
    for key, name, _, _ in CONFIGURATIONS:
        runs = results.get(key)
        if not runs:
            continue
        line = []
        for field, unit in (("mail_rate", "copies/s"), ("click_rate", "clicks/s")):
            values = [getattr(r, field) for r in runs]
            median = statistics.median(values)
            base.setdefault(field, median)
            line.append(f"{median:7.1f} {unit} ({min(values):.1f}–{max(values):.1f}, "
                        f"x{median / base[field]:.2f})")
        lost = sum(r.redirects - r.stored for r in runs)
        other = sorted({s for r in runs for s in r.statuses if s != 302})
        print(f"({key}) {name:>20}: {'  '.join(line)}; CPU busy "
              f"{statistics.median(r.busy for r in runs):.0%}, CPU per click: nodes "
              f"{statistics.median(r.node_us for r in runs):.0f} µs, PostgreSQL "
              f"{statistics.median(r.postgres_us for r in runs):.0f} µs; redirects without "
              f"an observation: {lost}; other statuses: {other or 'none'}")


if __name__ == "__main__":
    asyncio.run(main())
