"""The one maker of stored row ids: messages, submissions, click and open events, webhook
deliveries (and so the webhook envelope's ``id``).

Each id is a UUID of version 7 (RFC 9562): its first 48 bits are the time in
milliseconds, the rest random, and ids made one after the other by a process sort in the
order they were made. These ids are the keys of B-tree indexes (the tables' primary keys,
``events_message``, ``observations_message``, ``webhook_deliveries_event`` …). A random
key (version 4) lands every new row on a page of its own anywhere in the index, each one
written to the log and copied again at the checkpoint; time-ordered keys land the rows of
one moment on the same few pages at the index's end, and the clicks on recent mail on the
pages of recent messages (docs/performance.md, "Time-ordered ids")."""

from __future__ import annotations

import uuid_utils


def new_id() -> str:
    return str(uuid_utils.uuid7())
