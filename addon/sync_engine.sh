#!/bin/sh
# Copy the detection engine (custom_components/guard_mode/engine) into the add-on's build context
# as the top-level package guard_mode_engine, so the image needs no Home Assistant.
#
#   addon/sync_engine.sh [DEST]     DEST defaults to addon/guard_mode_engine
#
# Run it before every image build (the release workflow does); tests/addon/test_addon.py checks
# that an existing copy is identical to the source.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../custom_components/guard_mode/engine"
dest="${1:-$here/guard_mode_engine}"
if [ ! -f "$src/__main__.py" ] || [ ! -f "$src/data/yamnet.onnx" ]; then
    echo "sync_engine.sh: $src is not the engine (or its model is missing)" >&2
    exit 1
fi
tmp="$dest.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
# Everything but bytecode caches: the package, its model and label map.
(cd "$src" && find . -name __pycache__ -prune -o -type f ! -name '*.pyc' -print) |
    while IFS= read -r file; do
        mkdir -p "$tmp/$(dirname "$file")"
        cp -p "$src/$file" "$tmp/$file"
    done
rm -rf "$dest"
mv "$tmp" "$dest"
echo "engine copied to $dest"
