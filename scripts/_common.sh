# Sourced by the scripts in this folder: repository root as working directory, and a Python that
# Home Assistant 2026.x accepts (>= 3.14.2). Where the host has none, but this workplace's
# ../shared/bin/py314 exists, the calling script is re-run inside it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"

_py_ok() {
  command -v "$1" >/dev/null 2>&1 \
    && "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 14, 2) else 1)' 2>/dev/null
}

# ensure_python SCRIPT ARGS...: sets PYTHON, or re-executes SCRIPT under ../shared/bin/py314.
ensure_python() {
  local c
  for c in python3.14 python3; do
    if _py_ok "$c"; then PYTHON="$c"; return 0; fi
  done
  if [ -z "${GUARD_MODE_IN_PY314:-}" ] && [ -x "$ROOT/../shared/bin/py314" ]; then
    # Debian packages the tests and the demo use there: ffmpeg (real streams on loopback),
    # espeak-ng (the scenario recording), chromium (the browser check), libturbojpeg0 (Home
    # Assistant's camera component, loaded by its default integrations).
    exec env GUARD_MODE_IN_PY314=1 \
      PY314_PACKAGES="${PY314_PACKAGES:-ffmpeg espeak-ng chromium libturbojpeg0}" \
      "$ROOT/../shared/bin/py314" "$@"
  fi
  echo "Guard Mode needs Python >= 3.14.2 (what Home Assistant 2026.x needs)." >&2
  echo "Install it (e.g. 'uv python install 3.14' or your distribution's python3.14) and retry." >&2
  exit 1
}

# ensure_venv: create .venv and install requirements_dev.txt, again only when it (or a file it
# includes) changed.
ensure_venv() {
  local stamp="$VENV/.requirements.sha256" want
  want="$(cat requirements_dev.txt requirements_test.txt models/requirements.txt | sha256sum | cut -d' ' -f1)"
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "Setting up $VENV (Python: $("$PYTHON" --version))…" >&2
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r requirements_dev.txt
  echo "$want" >"$stamp"
}
