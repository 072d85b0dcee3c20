#!/bin/sh
# Start the engine with the add-on's options (/data/options.json, written by the Supervisor).
# OPTIONS_FILE, ENGINE_URI and SSL_DIR exist for tests; the add-on uses the defaults. The engine
# listens on the add-on network (Home Assistant reaches it by the add-on's hostname); the host
# port is published only if the user sets one in the Network section. The token reaches the
# engine in its environment, never on a command line.
set -eu
exec python3 - "${OPTIONS_FILE:-/data/options.json}" "${ENGINE_URI:-tcp://0.0.0.0:10800}" \
    "${SSL_DIR:-/ssl}" <<'PY'
import json
import os
import sys

path, uri, ssl_dir = sys.argv[1:4]
try:
    with open(path, encoding="utf-8") as handle:
        options = json.load(handle)
except (OSError, ValueError):
    options = {}
if not isinstance(options, dict):
    options = {}
backend = options.get("backend")
level = options.get("log_level")
backend = backend if backend in ("auto", "onnxruntime", "numpy") else "auto"
level = level if level in ("debug", "info", "warning", "error") else "info"
token = options.get("token")
if not isinstance(token, str) or not token.strip():
    print(
        "Cannot start: set the add-on's `token` option (Configuration tab) to the token shown "
        "in Guard Mode's options (Engine: Remote engine). The engine never listens without one.",
        file=sys.stderr,
    )
    sys.exit(2)
command = [sys.executable, "-m", "guard_mode_engine", "serve", "--uri", uri]
command += ["--backend", backend, "--log-level", level]
if options.get("tls") is True:
    files = []
    for key in ("certfile", "keyfile"):
        name = options.get(key)
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            print(f"Cannot start: `{key}` must be a file name in /ssl, got {name!r}", file=sys.stderr)
            sys.exit(2)
        files.append(os.path.join(ssl_dir, name))
    command += ["--tls-cert", files[0], "--tls-key", files[1]]
os.environ["GUARD_MODE_ENGINE_TOKEN"] = token.strip()
os.execv(sys.executable, command)
PY
