"""One event loop: the SMTP listeners, the HTTP server and the background workers,
started in order and stopped in reverse (docs/architecture.md); beside it, one process that commits
the clicks' observations (store/writer/client.py). Every background task runs under one
supervisor (tracker/supervisor.py), which restarts a task that dies and tells /healthz."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from relay.api.common import Api
from relay.app import make_app
from relay.config.live import LiveConfig, config_items
from relay.config.load import Config
from relay.config.shared import SharedRouteSettings
from relay.dashboard.activity import keep_activity
from relay.dashboard.pages import Dashboard
from relay.delivery.upstream import make_upstream
from relay.delivery.worker import DeliveryWorker
from relay.maintenance import QueueGauges, RetentionWorker
from relay.promotion import PromotionProcess
from relay.submission.accept import Submitter
from relay.submission.smtp import SubmissionHandler, protocol_factory, tls_context
from relay.throttle import Throttle
from store.clock import now_us
from store.mail import SPOOL_CHANNEL
from store.store import Store
from store.webhooks import WEBHOOKS_CHANNEL
from store.writer.client import ObservationWriter
from tracker.classify.useragent import preload as preload_user_agents
from tracker.clicks.recorder import ObservationRecorder
from tracker.http.front import KEEPALIVE_TIMEOUT, Front
from tracker.http.health import QueueHealth
from tracker.http.logs import server_log
from tracker.http.redirect import REDIRECTOR_KEY, Redirector
from tracker.metrics import Metrics
from tracker.promotion_report import metrics_report
from tracker.supervisor import Run, Supervisor
from tracker.webhooks.dispatch import WebhookDispatcher

log = logging.getLogger("clickrelay")

HTTP_SHUTDOWN_TIMEOUT = 10.0  # seconds for the answers owed to clicks to go out


@dataclass(kw_only=True)
class Running:
    """A started clickrelay: what tests and the command line need to reach it."""

    config: LiveConfig
    store: Store
    metrics: Metrics
    submitter: Submitter
    delivery: DeliveryWorker
    app: web.Application
    promotions: tuple[PromotionProcess, ...]  # tracking.promotion_processes of them
    webhooks: WebhookDispatcher
    observation_writer: ObservationWriter | None  # None on PostgreSQL
    supervisor: Supervisor
    smtp_addresses: list[tuple[str, int]] = field(default_factory=list)
    smtps_addresses: list[tuple[str, int]] = field(default_factory=list)
    http_addresses: list[tuple[str, int]] = field(default_factory=list)

    @property
    def smtp_port(self) -> int:
        return self.smtp_addresses[0][1]

    @property
    def http_port(self) -> int:
        return self.http_addresses[0][1]


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[Running]:
    async with AsyncExitStack() as stack:
        metrics = Metrics()
        store = await Store.open(config.store.where)
        stack.push_async_callback(store.close)
        metrics.count_commits(lambda: store.db.commits)
        shared: SharedRouteSettings | None = None
        noted_at = 0  # when this node last noted its file's routes and webhooks

        async def note(new: Config) -> None:
            nonlocal noted_at
            await store.note_config_items(config_items(new), now_us())
            noted_at = now_us()

        async def loaded(new: Config) -> None:
            await note(new)
            if shared is not None:
                await shared.file_loaded(new)

        live = LiveConfig(config, metrics, on_loaded=loaded)
        await note(config)
        await _take_over(store)
        if store.shared:  # several nodes: route switches changed on one are in force on all
            shared = SharedRouteSettings(live, store)
            await shared.start()
        upstream = make_upstream(config.upstream, config.smtp.hostname)
        delivery = DeliveryWorker(live, store, upstream, metrics)
        submitter = Submitter(live, store, metrics, on_spooled=delivery.wake)
        stack.push_async_callback(submitter.close)  # its worker processes, after the SMTP
        writer = None
        if config.store.path is not None:  # SQLite: clicks committed by a process of their own
            writer = ObservationWriter(config.store.path)
            await writer.start()
            stack.push_async_callback(writer.close)  # after the recorder's last batch
        # On PostgreSQL the recorder commits its batches itself, on the event loop.
        recorder = ObservationRecorder(live, writer or store, metrics)
        webhooks = WebhookDispatcher(live, store, metrics,
                                     lease=lambda: live().store.lease_seconds,
                                     noted=(lambda: noted_at) if store.shared else None)
        # Each takes a core when busy; their claims share the work (tracker/promote.py).
        promotions = tuple(PromotionProcess(config.path, metrics_report(metrics, webhooks.wake),
                                            store.release_observation_claims)
                           for _ in range(config.tracking.promotion_processes))
        throttle = Throttle()  # wrong passwords and tokens, SMTP AUTH and API alike
        supervisor = Supervisor(metrics, lambda: live().health)
        api = Api(live, store, submitter, wake_webhooks=webhooks.wake, throttle=throttle,
                  route_changed=shared.changed if shared is not None else None)
        dashboard = Dashboard(api, store, delivery.wake)
        app = make_app(
            store=store, metrics=metrics, redirector=Redirector(live, recorder, metrics),
            api=api, queue_health=QueueHealth(lambda: live().health, store),
            supervisor=supervisor, dashboard=dashboard,
        )
        r = Running(config=live, store=store, metrics=metrics, submitter=submitter,
                    delivery=delivery, app=app, promotions=promotions, webhooks=webhooks,
                    observation_writer=writer, supervisor=supervisor)
        recorder.start(supervisor)
        stack.push_async_callback(recorder.stop)  # after the HTTP server: flush, then stop
        await _start_workers(stack, supervisor, {
            "delivery": delivery.run, "config-watch": live.watch,
            **{promotion_task(n): p.run for n, p in enumerate(promotions)},
            "webhooks": webhooks.run, "queue-gauges": QueueGauges(live, store, metrics).run,
            "retention": RetentionWorker(live, store, metrics).run,
            "dashboard-activity": functools.partial(keep_activity, dashboard),
            **(_shared_tasks(store, shared, delivery, webhooks) if shared is not None else {}),
        })
        await _start_http(stack, r)
        await _start_smtp(stack, r, throttle)
        yield r


def promotion_task(n: int) -> str:
    """The supervised task of the ``n``-th promotion process (from 0): "promotion", then
    "promotion-2", "promotion-3" …"""
    return "promotion" if n == 0 else f"promotion-{n + 1}"


async def _take_over(store: Store) -> None:
    """Start where the previous run stopped. A SQLite file belongs to this process alone:
    what a dead run had claimed goes back now, and idempotency keys it held in flight are
    given back. On a database shared by several nodes a claim may be a live node's: a dead
    node's claims lapse with their leases (docs/deployment.md)."""
    await store.clean_spool()
    if store.shared:
        return
    released = await store.release_claims()
    if released:
        log.warning("released %d spool claims left by a previous run", released)
    await store.release_observation_claims()
    await store.release_webhook_claims()
    keys = await store.release_unfinished_keys()
    if keys:
        log.warning("gave back %d idempotency keys whose mail was never spooled", keys)


def _shared_tasks(store: Store, shared: SharedRouteSettings, delivery: DeliveryWorker,
                  webhooks: WebhookDispatcher) -> dict[str, Run]:
    """The tasks of a node that shares its store: route switches changed on other nodes,
    and wake-ups when another node spools mail or puts webhook deliveries in the outbox
    (docs/deployment.md)."""
    return {
        "route-settings": shared.run,
        "spool-wakeups": functools.partial(store.db.listen, SPOOL_CHANNEL, delivery.wake),
        "webhook-wakeups": functools.partial(store.db.listen, WEBHOOKS_CHANNEL, webhooks.wake),
    }


async def _start_workers(
    stack: AsyncExitStack, supervisor: Supervisor, workers: dict[str, Run]
) -> None:
    tasks = [supervisor.start(name, run) for name, run in workers.items()]

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    stack.push_async_callback(stop)


async def _start_http(stack: AsyncExitStack, r: Running) -> None:
    """aiohttp's runner, behind the listener's front that answers plain clicks itself
    and hands every other connection to aiohttp (tracker.http.front); with ``[http]
    click_front = false``, aiohttp alone answers every request (docs/redirect.md)."""
    # aiohttp's own keep-alive (an hour by default) set to the front's, so that an idle
    # or trickling connection is closed alike on both paths.
    runner = web.AppRunner(r.app, access_log=None, handle_signals=False,
                           keepalive_timeout=KEEPALIVE_TIMEOUT,
                           logger=server_log(r.app[REDIRECTOR_KEY]))
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    assert runner.server is not None
    http = r.config().http
    front = Front(r.app[REDIRECTOR_KEY], runner.server) if http.click_front else None
    host, port = _split(http.listen)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(front or runner.server, host, port, backlog=1024)

    async def stop() -> None:
        server.close()
        if front is not None:  # else the runner's cleanup waits for aiohttp's handlers
            await front.close(HTTP_SHUTDOWN_TIMEOUT)

    stack.push_async_callback(stop)
    r.http_addresses = [s.getsockname()[:2] for s in server.sockets]
    log.info("http listening on %s", r.http_addresses)


async def _start_smtp(stack: AsyncExitStack, r: Running, throttle: Throttle) -> None:
    config = r.config()
    handler = SubmissionHandler(r.config, r.submitter, r.metrics, throttle)
    loop = asyncio.get_running_loop()
    host, port = _split(config.smtp.listen)
    server = await loop.create_server(protocol_factory(config, handler), host, port)
    stack.push_async_callback(_close_server, server)
    r.smtp_addresses = [s.getsockname()[:2] for s in server.sockets]
    log.info("smtp listening on %s", r.smtp_addresses)
    if config.smtp.listen_tls:
        host, port = _split(config.smtp.listen_tls)
        factory = protocol_factory(config, handler, implicit_tls=True)
        tls = await loop.create_server(factory, host, port, ssl=tls_context(config))
        stack.push_async_callback(_close_server, tls)
        r.smtps_addresses = [s.getsockname()[:2] for s in tls.sockets]
        log.info("smtps listening on %s", r.smtps_addresses)


async def _close_server(server: asyncio.base_events.Server) -> None:
    server.close()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 5)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP reloads the configuration."""
    _warn_insecure(config)
    await asyncio.to_thread(_warn_example_accounts, config)
    # The user-agent lookups are built on first use (a few hundred ms): do it before the
    # first click arrives rather than on its request path.
    await asyncio.to_thread(preload_user_agents)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with running(config) as r:
        reloads: set[asyncio.Task[bool]] = set()

        def reload() -> None:
            task = asyncio.create_task(r.config.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        log.info("clickrelay running; SIGHUP reloads, SIGTERM stops")
        await stop.wait()
        log.info("stopping")
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped")


def _warn_insecure(config: Config) -> None:
    if not config.smtp.auth_require_tls:
        log.warning("smtp.auth_require_tls is false: AUTH is accepted on plain connections")
    _warn_dev_secrets(config)


def _warn_example_accounts(config: Config) -> None:
    """Dashboard accounts whose password is still the example's (argon2: tens of ms each)."""
    names = config.dashboard.example_users()
    if names:
        log.warning(
            "!!! dashboard account(s) %s in %s still use the example password "
            "(…change-me): set a new one with clickrelay hash-password !!!",
            ", ".join(names), config.path)


def _warn_dev_secrets(config: Config) -> None:
    if any("change-me" in s.replace("_", "-") for s in config.secrets()):
        log.warning(
            "!!! some secrets in %s are still the shipped development values (change-me): "
            "replace them before exposing clickrelay to anyone !!!", config.path
        )
