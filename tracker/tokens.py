"""Click tokens: HS256 JWTs naming a message, a link and its destination (DESIGN §5).

Claim names are one letter to keep links short. The first configured key signs; every
configured key verifies, so keys rotate without breaking links already sent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jwt

from tracker.config import SigningKey

ALGORITHM = "HS256"
MAX_TOKEN_LENGTH = 8192  # a token longer than this is refused before any decoding


@dataclass(frozen=True)
class ClickClaims:
    message_id: str
    link_index: int
    destination: str
    project_sid: str
    expires: int  # Unix seconds


class InvalidToken(Exception):
    """Not a token we signed: answer 404, never redirect."""


class ExpiredToken(Exception):
    """Signed by us but past its expiry: redirect, record nothing."""

    def __init__(self, claims: ClickClaims) -> None:
        super().__init__("token expired")
        self.claims = claims


def mint_token(key: SigningKey, claims: ClickClaims) -> str:
    payload = {
        "m": claims.message_id,
        "i": claims.link_index,
        "u": claims.destination,
        "s": claims.project_sid,
        "exp": claims.expires,
    }
    return jwt.encode(
        payload, key.secret.encode("utf-8"), algorithm=ALGORITHM, headers={"kid": key.id}
    )


def verify_token(token: str, keys: Sequence[SigningKey], now: float | None = None) -> ClickClaims:
    """The claims of a token signed by one of ``keys``; ``ExpiredToken`` when it is signed
    but expired, ``InvalidToken`` for anything else."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("missing or oversize token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"malformed: {exc}") from exc
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("algorithm not allowed")
    key = next((k for k in keys if k.id == header.get("kid")), None)
    if key is None:
        raise InvalidToken("unknown key id")
    secret = key.secret.encode("utf-8")
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp"], "verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    claims = _claims(payload)
    if now is None:
        import time

        now = time.time()
    if claims.expires <= now:
        raise ExpiredToken(claims)
    return claims


def _claims(payload: dict[str, object]) -> ClickClaims:
    message_id, index, url = payload.get("m"), payload.get("i"), payload.get("u")
    sid, exp = payload.get("s"), payload.get("exp")
    if not (
        isinstance(message_id, str)
        and isinstance(index, int)
        and isinstance(url, str)
        and isinstance(sid, str)
        and isinstance(exp, int)
    ):
        raise InvalidToken("claims missing or of the wrong type")
    return ClickClaims(message_id, index, url, sid, exp)
