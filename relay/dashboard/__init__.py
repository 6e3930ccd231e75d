"""The dashboard (docs/dashboard.md): server-rendered pages on the HTTP listener for the
admins of a clickrelay: projects, routes and their Track Clicks switch, click activity,
messages, webhooks and the spool. Its routes are listed in ``relay.app`` with the rest."""
