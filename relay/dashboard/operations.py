"""Webhooks and the spool in the dashboard (docs/dashboard.md): each webhook's recent
deliveries with their status and attempts and a **Send test** button (the API's
``webhook.test``, ``relay.api.webhooks.queue_test_delivery``); the spool's queued and
failed copies with their last error, and **Retry** and **Drop** for a queued copy, each
behind a confirmation page (``clickrelay spool``'s own operations,
``relay.delivery.spool``)."""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from relay.api.webhooks import DELIVERY_STATUS, find_webhook, queue_test_delivery
from relay.dashboard.auth import signed_in
from relay.dashboard.pages import dashboard_of, error_page, render
from relay.dashboard.projects import project_or_404
from relay.delivery.spool import SPOOL_ACTIONS, act_on_copy
from relay.errors import ApiRefusal
from store.clock import now_us

RECENT_DELIVERIES = 20
SPOOL_ROWS = 200


@signed_in
async def webhooks(request: web.Request) -> web.StreamResponse:
    project = project_or_404(request)
    if isinstance(project, web.Response):
        return project
    store = dashboard_of(request).store
    hooks = []
    for hook in project.webhooks:
        rows = await store.webhook_delivery_page(
            project.id, hook.id, status=None, event_type=None, since=None, until=None,
            offset=0, limit=RECENT_DELIVERIES)
        hooks.append((hook, rows))
    return render(request, "webhooks.html", {
        "project": project, "hooks": hooks, "status_words": DELIVERY_STATUS,
        "queued": request.query.get("queued", "")[:100],
    })


@signed_in
async def test_webhook(request: web.Request) -> web.StreamResponse:
    dashboard = dashboard_of(request)
    try:
        project, hook = find_webhook(dashboard.config(), request.match_info["webhook_id"])
        await queue_test_delivery(dashboard.api, project, hook)
    except ApiRefusal as exc:
        return error_page(request, exc.status, "Test not sent", exc.message)
    raise web.HTTPSeeOther(URL.build(path=f"/projects/{project.id}/webhooks",
                                     query={"queued": hook.id}))


@signed_in
async def spool(request: web.Request) -> web.StreamResponse:
    store = dashboard_of(request).store
    return render(request, "spool.html", {
        "summary": await store.spool_summary(now_us()),
        "queued": await store.spool_copies("queued", SPOOL_ROWS),
        "failed": await store.spool_copies("failed", SPOOL_ROWS),
        "done": request.query.get("done", "")[:200],
    })


@signed_in
async def confirm_spool_action(request: web.Request) -> web.StreamResponse:
    action, message_id = request.match_info["action"], request.match_info["message_id"]
    if action not in SPOOL_ACTIONS:
        return error_page(request, 404, "Not found", f"No spool action {action[:20]!r}.")
    found = await dashboard_of(request).store.get_message(message_id)
    if found is None or found.status != "queued":
        return error_page(request, 404, "Not found", f"No queued message {message_id!r}.")
    return render(request, "confirm.html", {"action": action, "message": found})


@signed_in
async def spool_action(request: web.Request) -> web.StreamResponse:
    action, message_id = request.match_info["action"], request.match_info["message_id"]
    if action not in SPOOL_ACTIONS:
        return error_page(request, 404, "Not found", f"No spool action {action[:20]!r}.")
    done = await act_on_copy(dashboard_of(request).store, action, message_id)
    if not done:
        return error_page(request, 404, "Not found", f"No queued message {message_id!r}.")
    if action == "retry":
        dashboard_of(request).wake_delivery()
    word = "will be retried now" if action == "retry" else "was dropped"
    raise web.HTTPSeeOther(URL.build(path="/spool", query={"done": f"{message_id} {word}"}))
