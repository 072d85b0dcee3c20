"""What logs and diagnostics may show of a URL, an error or a message: nothing secret.

Nothing here looks for secrets by pattern. A URL is parsed (``yarl``, as aiohttp does) and only
the parts that can't hold a credential are kept — scheme, host, port, and path segments that are
plain names; user info, every query value (and a query item without a name), the fragment and
any path segment holding ``=`` or ``;`` (``user=admin_password=x_channel=1.sdp``,
``;jsessionid=…``) are replaced by ``***``. Network errors are described from their errno, never
from their text, which carries the addresses a host name resolved to. Messages that may hold
settings (a satellite's last error) have those settings' values replaced wherever they appear.
"""

from __future__ import annotations

from collections.abc import Iterable
import os
import socket
import ssl

from yarl import URL

REDACTED = "***"


def redact_url(url: str, *, host: bool = True) -> str:
    """Return url without credentials (and without its host when host is False)."""
    try:
        parsed = URL(url)
        port = parsed.explicit_port
        name = parsed.raw_host
    except ValueError, TypeError:
        return REDACTED  # not even a URL: it might be anything
    if not parsed.absolute or not name:
        return REDACTED
    netloc = REDACTED if not host else f"[{name}]" if ":" in name else name
    if port is not None:
        netloc += f":{port}"
    if parsed.raw_user is not None or parsed.raw_password is not None:
        netloc = f"{REDACTED}@{netloc}"
    segments = [
        REDACTED if ("=" in segment or ";" in segment) else segment
        for segment in parsed.raw_path.split("/")
    ]
    text = f"{parsed.scheme}://{netloc}{'/'.join(segments)}"
    if parsed.raw_query_string:
        items = parsed.raw_query_string.replace(";", "&").split("&")
        text += "?" + "&".join(
            f"{item.partition('=')[0]}={REDACTED}" if "=" in item and item[0] != "=" else REDACTED
            for item in items
            if item
        )
    if parsed.raw_fragment:
        text += f"#{REDACTED}"
    return text


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Return text with every occurrence of each secret replaced (longest first)."""
    for secret in sorted({s for s in secrets if s and len(s) > 1}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def error_text(err: BaseException) -> str:
    """Describe a network error in plain words, without the addresses its text may hold."""
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, socket.gaierror):
        return "its host name can't be resolved"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted ({err.verify_message})"
    if isinstance(err, ssl.SSLError):
        return f"TLS failed ({err.reason or 'handshake'})"
    if isinstance(err, OSError) and err.errno:
        text = os.strerror(err.errno)
        return text[0].lower() + text[1:]
    if isinstance(err, ConnectionError | OSError):
        return "the connection failed"
    return type(err).__name__
