"""Tracking tokens: HS256 JWTs naming a message and a link and its destination (a click's,
docs/redirect.md) or a message's open pixel (``"k": "o"``, docs/opens.md).

Claim names are one letter to keep links short. A click token has no ``k``; an open token
has no link: neither verifies as the other (an open token at ``/c/`` is a 404, a click
token at ``/o/`` gets the image and no record). The first configured key signs; every
configured key verifies, so keys rotate without breaking links already sent.

Minting goes through pyjwt. Verification runs on every click and is the JWS check itself
(RFC 7515 §5.2, HS256 only): ``jwt.decode`` re-checks the shape of the secret on every
call (PEM, SSH, JWK look-alikes) and costs five times the signature; those checks are
made once, when the configuration is loaded (``check_signing_secret``), and pyjwt decodes
our tokens as well (tests/test_tokens.py). The parsing is strict: three base64url
segments without padding, a JSON object header with ``alg`` exactly HS256 and a known
``kid``, a 32-byte signature in canonical spelling, a payload that is one JSON object and
nothing else."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jwt
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidKeyError

from tracker.config import SigningKey

ALGORITHM = "HS256"
# Below aiohttp's request-line limit (8190 bytes), so that every token we accept to mint
# reaches the handler; anything longer is refused before it is decoded.
MAX_TOKEN_LENGTH = 8000

_HS256 = HMACAlgorithm(HMACAlgorithm.SHA256)
_SEGMENT = "[A-Za-z0-9_-]+"
_SHAPE = re.compile(rf"{_SEGMENT}\.{_SEGMENT}\.{_SEGMENT}")
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_CANONICAL_LAST = frozenset("AEIMQUYcgkosw048")
_JSON = json.JSONDecoder()


class ClickClaims(NamedTuple):
    """What a token says. A named tuple rather than a frozen dataclass: one is made on
    every click, and it is three times cheaper to make."""

    message_id: str
    link_index: int
    destination: str
    project_sid: str
    expires: int  # Unix seconds


class OpenClaims(NamedTuple):
    """What an open pixel's token says: the message, its project, the expiry."""

    message_id: str
    project_sid: str
    expires: int  # Unix seconds


OPEN_KIND = "o"  # the ``k`` claim of an open token


class InvalidToken(Exception):
    """Not a token we signed: answer 404, never redirect."""


class ExpiredToken(Exception):
    """Signed by us but past its expiry: redirect, record nothing."""

    def __init__(self, claims: ClickClaims | OpenClaims) -> None:
        super().__init__("token expired")
        self.claims = claims


def check_signing_secret(secret: str) -> str | None:
    """Why pyjwt would refuse ``secret`` as an HMAC key, or None if it is fine."""
    try:
        _HS256.prepare_key(secret.encode("utf-8"))
    except InvalidKeyError as exc:
        return str(exc)
    return None


def mint_token(key: SigningKey, claims: ClickClaims) -> str:
    payload = {
        "m": claims.message_id,
        "i": claims.link_index,
        "u": claims.destination,
        "s": claims.project_sid,
        "exp": claims.expires,
    }
    return _encode(key, payload)


def mint_open_token(key: SigningKey, claims: OpenClaims) -> str:
    return _encode(key, {"m": claims.message_id, "k": OPEN_KIND, "s": claims.project_sid,
                         "exp": claims.expires})


def _encode(key: SigningKey, payload: dict[str, Any]) -> str:
    return jwt.encode(
        payload, key.secret.encode("utf-8"), algorithm=ALGORITHM, headers={"kid": key.id}
    )


class TokenMinter:
    """``mint_token`` with one key, many times: the header segment (pyjwt's own) and the
    HMAC state are made once. A mail to many recipients mints a token per link and
    recipient, and pyjwt spends most of its time on checks that hold for every one of
    them. The tokens are ``mint_token``'s, byte for byte (tests/test_copies.py)."""

    def __init__(self, key: SigningKey) -> None:
        self._prefix = _header_segment(key).encode("ascii") + b"."
        self._mac = hmac.new(key.secret.encode("utf-8"), None, "sha256")

    def mint(self, claims: ClickClaims) -> str:
        return self._signed({"m": claims.message_id, "i": claims.link_index,
                             "u": claims.destination, "s": claims.project_sid,
                             "exp": claims.expires})

    def mint_open(self, claims: OpenClaims) -> str:
        """``mint_open_token``'s token, byte for byte."""
        return self._signed({"m": claims.message_id, "k": OPEN_KIND, "s": claims.project_sid,
                             "exp": claims.expires})

    def _signed(self, payload: dict[str, Any]) -> str:
        signing_input = self._prefix + _segment(
            json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        mac = self._mac.copy()
        mac.update(signing_input)
        return (signing_input + b"." + _segment(mac.digest())).decode("ascii")


def _segment(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def verify_token(token: str, keys: Sequence[SigningKey], now: float | None = None) -> ClickClaims:
    """The claims of a token signed by one of ``keys``; ``ExpiredToken`` when it is signed
    but expired, ``InvalidToken`` for anything else."""
    return TokenVerifier(keys).verify(token, now)


class TokenVerifier:
    """``verify_token`` for one set of keys, with the per-key work done once: the HMAC
    state of each secret, and the header segment that our own tokens carry for each key
    (a token with that exact header needs no header parsing)."""

    def __init__(self, keys: Sequence[SigningKey]) -> None:
        self.keys = tuple(keys)
        self._macs = {k.id: hmac.new(k.secret.encode("utf-8"), None, "sha256") for k in keys}
        self._ours = {_header_segment(k): self._macs[k.id] for k in keys}

    def verify(self, token: str, now: float | None = None) -> ClickClaims:
        claims = _claims(self._payload(token))
        if claims.expires <= (time.time() if now is None else now):
            raise ExpiredToken(claims)
        return claims

    def verify_open(self, token: str, now: float | None = None) -> OpenClaims:
        """The claims of an open pixel's token, as ``verify`` those of a click's."""
        claims = _open_claims(self._payload(token))
        if claims.expires <= (time.time() if now is None else now):
            raise ExpiredToken(claims)
        return claims

    def _payload(self, token: str) -> dict[str, Any]:
        """The payload of a token whose signature one of the keys made."""
        if not token or len(token) > MAX_TOKEN_LENGTH or not _SHAPE.fullmatch(token):
            raise InvalidToken("missing, oversize or not three base64url segments")
        signing_input, _, signature_segment = token.rpartition(".")
        header_segment, _, payload_segment = signing_input.partition(".")
        mac = self._ours.get(header_segment) or self._mac_for(header_segment)
        # 32 bytes take 43 characters whose last one carries 2 unused bits: they must be
        # zero, so that one signature has one spelling and a token one text.
        if len(signature_segment) != 43 or signature_segment[-1] not in _CANONICAL_LAST:
            raise InvalidToken("signature: not 32 bytes in canonical base64url")
        expected = mac.copy()
        expected.update(signing_input.encode("ascii"))
        signature = _decode_segment(signature_segment, "signature")
        if not hmac.compare_digest(expected.digest(), signature):
            raise InvalidToken("signature mismatch")
        return _json_object(payload_segment, "payload")

    def _mac_for(self, header_segment: str) -> hmac.HMAC:
        header = _json_object(header_segment, "header")
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("algorithm not allowed")
        if "crit" in header:  # RFC 7515 §4.1.11: extensions we do not understand
            raise InvalidToken("critical header extensions are not supported")
        kid = header.get("kid")
        mac = self._macs.get(kid) if isinstance(kid, str) else None
        if mac is None:
            raise InvalidToken("unknown key id")
        return mac


def _header_segment(key: SigningKey) -> str:
    """The protected header of the tokens ``mint_token`` makes with ``key``."""
    return jwt.encode({}, key.secret.encode("utf-8"), algorithm=ALGORITHM,
                      headers={"kid": key.id}).partition(".")[0]


def _decode_segment(segment: str, what: str) -> bytes:
    if len(segment) % 4 == 1:  # no base64 text has this length
        raise InvalidToken(f"{what}: truncated")
    try:
        padded = (segment + "=" * (-len(segment) % 4)).encode("ascii")
        return binascii.a2b_base64(padded.translate(_TO_STANDARD))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken(f"{what}: not base64url") from exc


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        text = _decode_segment(segment, what).decode("utf-8")
        # raw_decode skips json.loads' whitespace handling: a JSON text that we signed
        # has none around the object, and anything after it is refused below.
        value, end = _JSON.raw_decode(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidToken(f"{what}: not JSON") from exc
    if not isinstance(value, dict):
        raise InvalidToken(f"{what}: not a JSON object")
    if end != len(text):
        raise InvalidToken(f"{what}: not JSON (text after the object)")
    return value


def _claims(payload: dict[str, Any]) -> ClickClaims:
    if "k" in payload:
        raise InvalidToken("not a click token")
    message_id, index, url = payload.get("m"), payload.get("i"), payload.get("u")
    sid, exp = payload.get("s"), payload.get("exp")
    # Exact types: JSON true is not a link index (bool is a subclass of int).
    if not (
        type(message_id) is str
        and type(index) is int
        and type(url) is str
        and type(sid) is str
        and type(exp) is int
    ):
        raise InvalidToken("claims missing or of the wrong type")
    return ClickClaims(message_id, index, url, sid, exp)


def _open_claims(payload: dict[str, Any]) -> OpenClaims:
    message_id, sid, exp = payload.get("m"), payload.get("s"), payload.get("exp")
    if payload.get("k") != OPEN_KIND or "i" in payload or "u" in payload:
        raise InvalidToken("not an open token")
    if not (type(message_id) is str and type(sid) is str and type(exp) is int):
        raise InvalidToken("claims missing or of the wrong type")
    return OpenClaims(message_id, sid, exp)
