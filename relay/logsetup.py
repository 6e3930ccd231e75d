"""How clickrelay's processes log: one line a record on standard error, the same format
for the server and the processes it starts (relay/promotion.py)."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure(level: int | str) -> None:
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr)
    # aiosmtpd logs every command at INFO and a per-connection AUTH-without-TLS warning;
    # clickrelay logs what matters itself.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
