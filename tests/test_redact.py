"""What logs and diagnostics may show of URLs and network errors (redact.py)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from custom_components.guard_mode.redact import error_text, redact_url, scrub


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        ("rtsp://admin:hunter2@cam.local:554/live", "rtsp://***@cam.local:554/live", ["hunter2"]),
        (
            "rtsp://cam/user=admin_password=x_channel=1.sdp",
            "rtsp://cam/***",
            ["admin", "password=x"],
        ),
        ("http://cam/cgi?loginpas=s3cret&ch=1", "http://cam/cgi?loginpas=***&ch=***", ["s3cret"]),
        ("http://cam/x?access_code=12345678", "http://cam/x?access_code=***", ["12345678"]),
        ("http://cam/x?p=pw&u=me", "http://cam/x?p=***&u=***", ["pw", "me"]),
        ("rtsp://cam/live;jsessionid=ABCDEF", "rtsp://cam/***", ["ABCDEF"]),
        ("http://cam/stream#token=xyz", "http://cam/stream#***", ["xyz"]),
        ("http://cam/stream#xyz", "http://cam/stream#***", ["xyz"]),
        ("rtsp://cam/x?secretvalue", "rtsp://cam/x?***", ["secretvalue"]),
        ("rtsp://cam/x?a=1;b=2", "rtsp://cam/x?a=***&b=***", []),
        ("rtsp://u%40x:p%3Aw@cam/s", "rtsp://***@cam/s", ["p%3Aw", "u%40x"]),
        ("rtsp://[::1]:8554/front", "rtsp://[::1]:8554/front", []),
        ("rtsp://[broken", "***", ["broken"]),
        ("not a url at all", "***", ["not a url"]),
        ("http://cam:99999/x", "***", []),
    ],
)
def test_urls_are_redacted_by_parsing(url: str, shown: str, secrets: list[str]) -> None:
    assert redact_url(url) == shown
    for secret in secrets:
        assert secret not in redact_url(url)
    assert "cam" not in redact_url(url, host=False)


def test_scrub_replaces_the_longest_first() -> None:
    text = "cannot reach cam.local (cam) at rtsp://cam.local/x"
    assert scrub(text, ["cam", "cam.local", None, "", "x"]) == (
        "cannot reach *** (***) at rtsp://***/x"
    )


@pytest.mark.usefixtures("socket_enabled")
async def test_network_errors_name_no_address(unused_tcp_port: int) -> None:
    with pytest.raises(OSError, match="onnect") as refused:
        await asyncio.open_connection("localhost", unused_tcp_port)
    assert "127.0.0.1" in str(refused.value) or "::1" in str(refused.value)  # what it hides
    text = error_text(refused.value)
    assert text in ("connection refused", "the connection failed")
    assert "127.0.0.1" not in text
    assert error_text(socket.gaierror(socket.EAI_NONAME, "Name or service not known")) == (
        "its host name can't be resolved"
    )
    assert error_text(TimeoutError()) == "timed out"
    assert error_text(ValueError("x")) == "ValueError"
