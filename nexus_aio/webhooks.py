"""Completion webhooks: the secret, the Standard Webhooks signature, and which targets are allowed.

Signatures follow the Standard Webhooks specification: the signed content is
``"{webhook-id}.{webhook-timestamp}.{body}"``, signed with HMAC-SHA256 under the secret's bytes
(the base64 part of ``whsec_<base64>``) and sent as ``webhook-signature: v1,<base64>``. The
``webhook-id`` of an execution's delivery is the same on every attempt, so a receiver can drop
repeats.

Targets are checked twice (SSRF guard): at submission (scheme, host, and every address the name
resolves to) and at delivery, by the resolver of the connection itself, so a name that resolves
to a public address at submission and to ``127.0.0.1`` later is still refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from nexus_aio.errors import ConfigurationError, ValidationError

__all__ = [
    "METADATA_ADDRESSES",
    "WebhookSecret",
    "address_refusal",
    "message_id",
    "target_of",
]

SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2048
# Cloud metadata services, refused even if a deployment allows private ranges by host name.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("192.0.0.192"),  # Oracle Cloud
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6
    }
)


@dataclass(frozen=True, slots=True)
class WebhookSecret:
    """The signing key; build it with :meth:`parse` (a malformed secret stops startup)."""

    key: bytes

    @classmethod
    def parse(cls, value: str) -> WebhookSecret:
        if not value.startswith(SECRET_PREFIX):
            raise ConfigurationError(
                "webhook_secret must look like whsec_<base64> (the Standard Webhooks form)"
            )
        try:
            key = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigurationError(
                f"webhook_secret: the part after whsec_ is not base64: {exc}"
            ) from None
        if len(key) < 24:
            raise ConfigurationError(
                f"webhook_secret: the key is {len(key)} bytes; use at least 24 (32 recommended)"
            )
        return cls(key)

    def sign(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The ``webhook-signature`` header value for one attempt."""
        signed = f"{msg_id}.{timestamp}.".encode() + body
        digest = hmac.new(self.key, signed, hashlib.sha256).digest()
        return "v1," + base64.b64encode(digest).decode()


def message_id(execution_id: str) -> str:
    """The ``webhook-id`` of an execution's completion message (stable across attempts)."""
    return f"msg_{execution_id}"


def target_of(url: object) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a webhook URL; a ``ValidationError`` (400) if it is not an
    absolute http(s) URL without credentials."""
    if not isinstance(url, str) or not url:
        raise _bad_url("webhook must be an http(s) URL string", url)
    if len(url) > MAX_URL_LENGTH or not url.isascii() or not url.isprintable():
        raise _bad_url(f"webhook must be a printable ASCII URL of at most {MAX_URL_LENGTH}", url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _bad_url(f"webhook is not a valid URL: {exc}", url) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad_url("webhook must be an absolute http:// or https:// URL", url)
    if parts.username is not None or parts.password is not None:
        raise _bad_url("webhook URLs may not carry credentials", url)
    host = parts.hostname.rstrip(".").lower()
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def _bad_url(message: str, url: object) -> ValidationError:
    shown = url[:200] if isinstance(url, str) else type(url).__name__
    return ValidationError(message, details={"field": "webhook", "received": shown})


def address_refusal(address: str) -> str | None:
    """Why delivering to ``address`` (an IP literal) is refused, or None when it is public."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_private:
        return f"{ip} is a private address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or not ip.is_global:
        return f"{ip} is not a public address"
    return None


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
