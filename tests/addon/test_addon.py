"""The add-on: its configuration, its image recipe, and the engine copy it is built from."""

from __future__ import annotations

import asyncio
import contextlib
import filecmp
import json
import os
from pathlib import Path
import re
import signal
import ssl
import subprocess
import sys
import time
from typing import Any

from packaging.requirements import Requirement
import pytest
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Describe
import yaml  # type: ignore[import-untyped]

from custom_components.guard_mode.engine.protocol import (
    DEFAULT_PORT,
    ENGINE_VERSION,
    ERROR_UNAUTHORIZED,
    MAX_HEADER,
    GuardModeAuth,
    GuardModeInfo,
    ProtocolError,
    fingerprint,
    read_event,
)

from ..certs import make_certificate

REPO = Path(__file__).resolve().parents[2]
ADDON = REPO / "addon"
ENGINE = REPO / "custom_components" / "guard_mode" / "engine"
VENDORED = ADDON / "guard_mode_engine"
MANIFEST = json.loads((REPO / "custom_components" / "guard_mode" / "manifest.json").read_text())


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def pins(text: str) -> dict[str, str]:
    """Return {package: version} of the ``name==version`` lines of a requirements text."""
    return {
        m.group(1).lower(): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", text, re.MULTILINE)
    }


def engine_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def sync_to(dest: Path) -> Path:
    result = subprocess.run(
        ["sh", str(ADDON / "sync_engine.sh"), str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dest


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the engine as the image gets it, in a folder of its own."""
    return sync_to(tmp_path_factory.mktemp("image") / "guard_mode_engine")


# --- configuration -------------------------------------------------------------------------


def test_config() -> None:
    config = load_yaml(ADDON / "config.yaml")
    assert config["name"] == "Guard Mode engine"
    assert config["slug"] == "guard_mode_engine"
    assert config["version"] == MANIFEST["version"] == ENGINE_VERSION
    assert isinstance(config["description"], str)
    assert config["description"]
    assert sorted(config["arch"]) == ["aarch64", "amd64"]
    # Not published on the host by default: Home Assistant reaches it on the add-on network.
    assert config["ports"] == {f"{DEFAULT_PORT}/tcp": None}
    assert set(config["ports_description"]) == set(config["ports"])
    assert config["map"] == ["ssl"]  # the TLS certificate, read-only
    assert config["init"] is False
    assert config["startup"] == "services"
    assert config["image"] == "ghcr.io/guard-mode/{arch}-guard-mode-engine"
    # No privileges, no host access, no audio or hardware.
    forbidden = {
        "privileged",
        "full_access",
        "host_network",
        "host_pid",
        "host_ipc",
        "host_dbus",
        "audio",
        "video",
        "devices",
        "usb",
        "uart",
        "gpio",
        "udev",
        "kernel_modules",
        "devicetree",
        "docker_api",
        "hassio_api",
        "homeassistant_api",
        "auth_api",
    }
    assert not forbidden & set(config)
    assert config.get("apparmor", True) is True


def test_options_match_schema() -> None:
    config = load_yaml(ADDON / "config.yaml")
    options, schema = config["options"], config["schema"]
    assert isinstance(options, dict)
    assert isinstance(schema, dict)
    assert set(options) == set(schema)
    assert set(schema) == {"backend", "log_level", "token", "tls", "certfile", "keyfile"}
    assert schema["token"] == "password"
    assert options["token"] == ""  # the user sets it: the engine never starts without one
    assert (schema["tls"], options["tls"]) == ("bool", False)
    choices = {}
    for key in ("backend", "log_level"):
        rule = schema[key]
        match = re.fullmatch(r"list\(([a-z|]+)\)", rule)
        assert match, f"{key}: {rule}"
        choices[key] = match.group(1).split("|")
        assert options[key] in choices[key]
    assert choices["backend"] == ["auto", "onnxruntime", "numpy"]
    # run.sh accepts exactly these
    run = (ADDON / "run.sh").read_text()
    for key in ("backend", "log_level"):
        assert str(tuple(choices[key])).replace("'", '"') in run, key


def test_every_option_is_explained_in_the_configuration_tab() -> None:
    config = load_yaml(ADDON / "config.yaml")
    translations = load_yaml(ADDON / "translations" / "en.yaml")
    assert isinstance(translations, dict)
    explained = translations["configuration"]
    assert set(explained) == set(config["schema"])
    for option, text in explained.items():
        assert text["name"], option
        assert len(text["description"]) > 20, option
    assert set(translations["network"]) == set(config["ports"])


def test_repository_yaml() -> None:
    repository = load_yaml(REPO / "repository.yaml")
    assert set(repository) == {"name", "url", "maintainer"}
    assert str(repository["url"]).startswith("https://github.com/")


def test_docs_and_changelog() -> None:
    docs = (ADDON / "DOCS.md").read_text()
    assert str(DEFAULT_PORT) in docs
    assert "sync_engine.sh" in docs
    assert f"## {ENGINE_VERSION}" in (ADDON / "CHANGELOG.md").read_text()
    assert (ADDON / "README.md").read_text().startswith("# Home Assistant add-on: Guard Mode")


# --- image recipe --------------------------------------------------------------------------


def test_requirements_are_the_projects_pins() -> None:
    text = (ADDON / "requirements.txt").read_text()
    image = pins(text)
    ranges = {Requirement(text).name: Requirement(text) for text in MANIFEST["requirements"]}
    dev = pins((REPO / "requirements_dev.txt").read_text())
    for package in ("numpy", "av", "wyoming"):  # the versions tested, in the manifest's ranges
        assert image[package] == dev[package], package
        assert ranges[package].specifier.contains(image[package]), package
    assert image["onnxruntime"] == dev["onnxruntime"]
    # every requirement is hash-checked; compiled ones have one wheel per architecture
    blocks = re.split(r"\n(?=[A-Za-z])", text.split("\n\n")[-1].strip())
    requirements = [b for b in blocks if not b.startswith("#")]
    assert len(requirements) == len(image)
    for block in requirements:
        name = block.split("==")[0].lower()
        hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", block)
        compiled = name in {"numpy", "onnxruntime", "av", "protobuf"}
        assert len(hashes) == (2 if compiled else 1), block


def test_dockerfile() -> None:
    lines = [
        line.strip()
        for line in (ADDON / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [line for line in lines if line.startswith("FROM")] == ["FROM python:3.14-slim-trixie"]
    text = "\n".join(lines)
    assert "pip install --only-binary=:all: --require-hashes -r /app/requirements.txt" in text
    assert "COPY guard_mode_engine /app/guard_mode_engine" in text
    assert f"EXPOSE {DEFAULT_PORT}/tcp" in text
    assert lines[-1] == 'CMD ["/run.sh"]'
    # everything COPY'd is inside the build context (addon/)
    for line in lines:
        if line.startswith("COPY"):
            source = line.split()[1]
            assert source == "guard_mode_engine" or (ADDON / source).is_file(), line


def test_scripts_are_executable() -> None:
    for name in ("run.sh", "sync_engine.sh"):
        assert os.access(ADDON / name, os.X_OK), name
        result = subprocess.run(["sh", "-n", str(ADDON / name)], check=False, timeout=10)
        assert result.returncode == 0, name


def test_vendored_copy_is_ignored_by_git() -> None:
    assert "/guard_mode_engine/" in (ADDON / ".gitignore").read_text().splitlines()


# --- the engine copy -----------------------------------------------------------------------


def test_sync_makes_an_exact_copy(synced: Path) -> None:
    source = engine_files(ENGINE)
    assert "data/yamnet.onnx" in source
    assert engine_files(synced) == source
    # again, over an older copy: files removed from the engine disappear from the copy
    (synced / "stale.py").write_text("")
    sync_to(synced)
    assert engine_files(synced) == source


def test_vendored_copy_is_in_sync() -> None:
    """A copy left in addon/ by sync_engine.sh must match the engine it was taken from."""
    if not VENDORED.exists():
        pytest.skip("no addon/guard_mode_engine (made by addon/sync_engine.sh before a build)")
    compare = filecmp.dircmp(ENGINE, VENDORED, ignore=["__pycache__"])
    assert engine_files(VENDORED) == engine_files(ENGINE), (
        f"addon/guard_mode_engine is stale: run addon/sync_engine.sh ({compare.diff_files})"
    )


def test_copy_runs_without_home_assistant(synced: Path) -> None:
    """The image's package imports nothing of Home Assistant or of the integration."""
    code = (
        "import sys, guard_mode_engine.server, guard_mode_engine.__main__;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('homeassistant', 'custom_components'));"
        "print(bad)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=synced.parent,
        env={**os.environ, "PYTHONPATH": str(synced.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def start_logged(
    command: list[str], cwd: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


TOKEN = "addon-token-0123456789"


def run_sh(tmp_path: Path, synced: Path, options: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start run.sh as the container does: options from a JSON file, the copied package."""
    path = tmp_path / "options.json"
    path.write_text(json.dumps(options))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(synced.parent),
        "OPTIONS_FILE": str(path),
        "ENGINE_URI": "tcp://127.0.0.1:0",
        "SSL_DIR": str(tmp_path),
    }
    env.pop("GUARD_MODE_ENGINE_TOKEN", None)
    return start_logged(["sh", str(ADDON / "run.sh")], tmp_path, env, tmp_path / "engine.log")


async def wait_listening(process: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + 30
    while not (found := re.search(r"listening on tcp://127\.0\.0\.1:(\d+)", log.read_text())):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        await asyncio.sleep(0.05)
    return int(found.group(1))


async def describe(port: int, token: str, **tls: Any) -> Event | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=MAX_HEADER, **tls)
    try:
        await async_write_event(GuardModeAuth(token).event(), writer)
        await async_write_event(Describe().event(), writer)
        async with asyncio.timeout(10):
            return await read_event(reader)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.mark.usefixtures("socket_enabled")
async def test_run_sh_serves_with_the_options(synced: Path, tmp_path: Path) -> None:
    """run.sh, as the container runs it: options from the JSON file, the copied package."""
    options = {"backend": "numpy", "log_level": "debug", "token": TOKEN, "tls": False}
    process = run_sh(tmp_path, synced, options)
    log = tmp_path / "engine.log"
    try:
        port = await wait_listening(process, log)
        event = await describe(port, TOKEN)
        assert event is not None
        info = GuardModeInfo.from_event(event)
        assert info.backend == "numpy"
        refused = await describe(port, "not-the-token-at-all")
        assert refused is not None
        assert Error.from_event(refused).code == ERROR_UNAUTHORIZED
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "DEBUG" in text
    assert "(numpy backend" in text
    assert "token required, no TLS" in text
    assert TOKEN not in text
    assert "Traceback" not in text


@pytest.mark.usefixtures("socket_enabled")
async def test_run_sh_with_tls(synced: Path, tmp_path: Path) -> None:
    """With tls on, the engine speaks TLS only, with the certificate from /ssl."""
    cert, _ = make_certificate(tmp_path, "fullchain.pem", "privkey.pem")
    options = {"backend": "numpy", "log_level": "info", "token": TOKEN, "tls": True}
    options |= {"certfile": "fullchain.pem", "keyfile": "privkey.pem"}
    process = run_sh(tmp_path, synced, options)
    log = tmp_path / "engine.log"
    try:
        port = await wait_listening(process, log)
        assert f"certificate SHA-256 {fingerprint(cert)}" in log.read_text()
        context = ssl.create_default_context(cafile=str(tmp_path / "fullchain.pem"))
        context.check_hostname = False
        event = await describe(port, TOKEN, ssl=context)
        assert event is not None
        assert GuardModeInfo.from_event(event).backend == "numpy"
        plain: Event | None = None
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ProtocolError):
            plain = await describe(port, TOKEN)
        assert plain is None  # plain TCP gets nothing
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token": ""}, "set the add-on's `token` option"),
        ({"token": "short"}, "at least 16 characters"),
        ({"token": TOKEN, "tls": True, "certfile": "../etc/passwd"}, "must be a file name"),
        (
            {"token": TOKEN, "tls": True, "certfile": "missing.pem", "keyfile": "k.pem"},
            "cannot use the certificate",
        ),
    ],
)
def test_run_sh_refuses_to_start(
    synced: Path, tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    process = run_sh(tmp_path, synced, {"backend": "numpy", **options})
    assert process.wait(60) == 2
    text = (tmp_path / "engine.log").read_text()
    assert message in text, text
    assert "Traceback" not in text
