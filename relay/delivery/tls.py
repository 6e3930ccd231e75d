"""TLS to the upstream (docs/mail.md, "Delivery"): the context of ``[upstream]``'s options
(a CA bundle, a client certificate), and a certificate failure told as a permanent
failure of the attempt that names the option to set."""

from __future__ import annotations

import ssl

from relay.config.load import UpstreamConfig
from relay.errors import UpstreamPermanent


def tls_context(config: UpstreamConfig) -> ssl.SSLContext | None:
    """The TLS context of ``[upstream]``'s options: its CA bundle, its client certificate.
    None without them (aiosmtplib's own: the system's CAs). On smtp:// the upstream's
    certificate is still not checked (opportunistic TLS), but the client's is shown."""
    if config.tls_ca_file is None and config.tls_client_cert is None:
        return None
    context = ssl.create_default_context(
        cafile=str(config.tls_ca_file) if config.tls_ca_file else None)
    if config.scheme == "smtp":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.tls_client_cert is not None:
        context.load_cert_chain(str(config.tls_client_cert),
                                str(config.tls_client_key) if config.tls_client_key else None)
    return context


def certificate_refusal(exc: BaseException) -> UpstreamPermanent | None:
    """A TLS failure over a certificate, as a permanent failure of the attempt that names
    the option to set; None for any other failure. (RFC 3463 X.7.5: cryptographic failure.)"""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return UpstreamPermanent(
                f"TLS: the upstream's certificate was not accepted ({cause.verify_message}): "
                "set [upstream] tls_ca_file to the CA bundle that signed it", status="5.7.5")
        if isinstance(cause, ssl.SSLError) and "CERTIFICATE" in (cause.reason or ""):
            return UpstreamPermanent(
                f"TLS: the upstream refused the connection over a certificate ({cause.reason}):"
                " set [upstream] tls_client_cert (and tls_client_key) to the certificate it "
                "expects", status="5.7.5")
        cause = cause.__cause__ or cause.__context__
    return None
