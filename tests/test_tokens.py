"""Click tokens: HS256 JWTs with a kid header, short claims, rotation and strict refusal
(docs/redirect.md)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.config.load import ConfigError, load_config
from tests.conftest import base_settings, write_config
from tracker.config import SigningKey
from tracker.tokens import (
    MAX_TOKEN_LENGTH,
    ClickClaims,
    ExpiredToken,
    InvalidToken,
    check_signing_secret,
    mint_token,
    verify_token,
)

K1 = SigningKey("k1", "first-signing-key-0123456789abcdef")
K2 = SigningKey("k2", "second-signing-key-0123456789abcdef")
FUTURE = int(time.time()) + 86_400
CLAIMS = ClickClaims("0193c5a2-7b1e-7c3a-9f0e-1234567890ab", 3,
                     "https://example.com/a?b=c&d=é#f", "acme1", FUTURE)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> list[str]:
    return token.split(".")


def test_token_is_an_hs256_jwt_with_kid_and_short_claims() -> None:
    token = mint_token(K1, CLAIMS)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    # pyjwt itself accepts it with the UTF-8 bytes of the secret as the HMAC key.
    payload = jwt.decode(token, K1.secret.encode("utf-8"), algorithms=["HS256"])
    assert payload == {"m": CLAIMS.message_id, "i": 3, "u": CLAIMS.destination, "s": "acme1",
                       "exp": FUTURE}
    assert verify_token(token, [K1]) == CLAIMS


def test_every_listed_key_verifies_and_only_listed_keys() -> None:
    old = mint_token(K1, CLAIMS)
    assert verify_token(old, [K2, K1]) == CLAIMS  # K2 now signs; K1 still verifies
    with pytest.raises(InvalidToken, match="unknown key id"):
        verify_token(old, [K2])


def test_a_token_pyjwt_signed_with_the_same_key_verifies() -> None:
    payload = {"exp": FUTURE, "s": "acme1", "u": "https://x.example/", "i": 0, "m": "m"}
    token = jwt.encode(payload, K1.secret, algorithm="HS256", headers={"kid": "k1"})
    assert verify_token(token, [K1]).destination == "https://x.example/"


def test_a_header_spelt_otherwise_is_parsed_and_verifies() -> None:
    token = _forged({"kid": "k1", "alg": "HS256"}, PAYLOAD, K1.secret.encode())
    assert verify_token(token, [K1]).message_id == "m"


def test_expired_token_raises_with_its_claims() -> None:
    token = mint_token(K1, ClickClaims("m", 0, "https://example.com/", "acme1", 1_000))
    with pytest.raises(ExpiredToken) as info:
        verify_token(token, [K1])
    assert info.value.claims.destination == "https://example.com/"
    assert verify_token(token, [K1], now=999).expires == 1_000


def test_an_expired_token_with_a_bad_signature_is_invalid_not_expired() -> None:
    token = mint_token(SigningKey("k1", "x" * 40), ClickClaims("m", 0, "https://e/", "a", 1))
    with pytest.raises(InvalidToken):
        verify_token(token, [K1])


def _forged(header: dict[str, object], payload: dict[str, object], key: bytes) -> str:
    import hashlib
    import hmac

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


PAYLOAD = {"m": "m", "i": 0, "u": "https://example.com/", "s": "acme1", "exp": FUTURE}


def _signed_payload(text: str) -> str:
    """A token whose payload segment is ``text`` as it stands, properly signed with K1."""
    import hashlib
    import hmac

    header = b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
    signing_input = f"{header}.{b64(text.encode())}"
    signature = hmac.new(K1.secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "missing"),
        ("abc", "three base64url segments"),
        ("a.b.c.d", "three base64url segments"),
        ("a=.b.c", "three base64url segments"),
        ("x" * (MAX_TOKEN_LENGTH + 1), "oversize"),
        (_forged({"alg": "none", "kid": "k1"}, PAYLOAD, b""), "algorithm"),
        (_forged({"alg": "HS512", "kid": "k1"}, PAYLOAD, K1.secret.encode()), "algorithm"),
        (_forged({"alg": "RS256", "kid": "k1"}, PAYLOAD, K1.secret.encode()), "algorithm"),
        (_forged({"alg": "HS256", "kid": "k9"}, PAYLOAD, K1.secret.encode()), "unknown key"),
        (_forged({"alg": "HS256"}, PAYLOAD, K1.secret.encode()), "unknown key"),
        (_forged({"alg": "HS256", "kid": ["k1"]}, PAYLOAD, K1.secret.encode()), "unknown key"),
        (_forged({"alg": "HS256", "kid": {}}, PAYLOAD, K1.secret.encode()), "unknown key"),
        (_forged({"alg": "HS256", "kid": "k1", "crit": ["b64"]}, PAYLOAD, K1.secret.encode()),
         "critical"),
        (_forged({"alg": "HS256", "kid": "k1"}, PAYLOAD, b"another-key-0123456789abcdef0123"),
         "signature mismatch"),
        (_forged({"alg": "HS256", "kid": "k1"}, {**PAYLOAD, "i": True}, K1.secret.encode()),
         "wrong type"),
        (_forged({"alg": "HS256", "kid": "k1"}, {**PAYLOAD, "exp": "soon"}, K1.secret.encode()),
         "wrong type"),
        (_forged({"alg": "HS256", "kid": "k1"}, {"m": "m", "i": 0, "s": "acme1", "exp": FUTURE},
                 K1.secret.encode()), "missing"),
        (f"{b64(b'[1]')}.{b64(b'{}')}.{b64(b'x' * 32)}", "not a JSON object"),
        (_signed_payload(json.dumps(PAYLOAD) + " {}"), "text after the object"),
        (_signed_payload(" " + json.dumps(PAYLOAD)), "not JSON"),
        (_signed_payload(json.dumps([PAYLOAD])), "not a JSON object"),
        (f"{b64(b'not json')}.{b64(b'{}')}.{b64(b'x' * 32)}", "not JSON"),
    ],
)
def test_anything_not_signed_by_us_is_invalid(token: str, reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        verify_token(token, [K1])


def test_swapped_destination_fails_the_signature() -> None:
    header, _, signature = segments(mint_token(K1, CLAIMS))
    evil = {"m": CLAIMS.message_id, "i": 3, "u": "https://evil.example/", "s": "acme1",
            "exp": FUTURE}
    with pytest.raises(InvalidToken, match="signature mismatch"):
        verify_token(f"{header}.{b64(json.dumps(evil).encode())}.{signature}", [K1])


def test_truncated_token_is_invalid() -> None:
    token = mint_token(K1, CLAIMS)
    for cut in (1, 2, 3, 10, len(segments(token)[2]) + 1):
        with pytest.raises(InvalidToken):
            verify_token(token[:-cut], [K1])


def test_non_canonical_signature_encoding_is_refused() -> None:
    header, payload, signature = segments(mint_token(K1, CLAIMS))
    # 32 bytes in 43 characters: the last one carries 2 unused bits; setting them keeps
    # the decoded bytes but makes another token text, which must not pass.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    twin = signature[:-1] + alphabet[last ^ 1]
    assert base64.urlsafe_b64decode(twin + "=") == base64.urlsafe_b64decode(signature + "=")
    with pytest.raises(InvalidToken, match="canonical"):
        verify_token(f"{header}.{payload}.{twin}", [K1])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_character_change_is_refused(data: st.DataObject) -> None:
    token = mint_token(K1, CLAIMS)
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != token[position]))
    with pytest.raises(InvalidToken):
        verify_token(token[:position] + replacement + token[position + 1 :], [K1])


def test_secret_pyjwt_would_refuse_is_a_config_error(tmp_path: Path) -> None:
    jwk = '{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}'
    assert check_signing_secret(jwk) is not None
    assert check_signing_secret(K1.secret) is None
    settings_ = base_settings(tmp_path, 2525)
    settings_["tracking"]["signing_keys"] = [{"id": "k1", "secret": jwk}]
    with pytest.raises(ConfigError, match=r"tracking\.signing_keys\[0\]\.secret: .*JWK"):
        write_config(tmp_path / "c.toml", settings_)


def test_example_signing_key_mints_and_verifies() -> None:
    config = load_config(Path(__file__).resolve().parents[1] / "config.example.toml")
    key = config.tracking.signing_keys[0]
    assert verify_token(mint_token(key, CLAIMS), config.tracking.signing_keys) == CLAIMS
