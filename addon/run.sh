#!/bin/sh
# Start the engine with the add-on's options (/data/options.json, written by the Supervisor).
# OPTIONS_FILE and ENGINE_URI exist for tests; the add-on uses the defaults.
set -eu
options=${OPTIONS_FILE:-/data/options.json}
uri=${ENGINE_URI:-tcp://0.0.0.0:10800}
backend=auto
log_level=info
if [ -f "$options" ]; then
    # Two words out, each checked against the schema's choices (a bad value gives the default).
    # shellcheck disable=SC2046
    set -- $(python3 - "$options" <<'PY'
import json, sys
try:
    with open(sys.argv[1], encoding="utf-8") as handle:
        options = json.load(handle)
except (OSError, ValueError):
    options = {}
if not isinstance(options, dict):
    options = {}
backend = options.get("backend")
level = options.get("log_level")
print(backend if backend in ("auto", "onnxruntime", "numpy") else "auto")
print(level if level in ("debug", "info", "warning", "error") else "info")
PY
)
    backend=$1
    log_level=$2
fi
exec python3 -m guard_mode_engine serve --uri "$uri" --backend "$backend" --log-level "$log_level"
