"""Command line: ``python -m custom_components.guard_mode.engine analyze FILE... [--json]``.

``... engine serve [--uri tcp://0.0.0.0:10800]`` runs the engine as a Wyoming service.
"""

from __future__ import annotations

import argparse
import json
import sys

from .analyze import analyze_file
from .pcm import AudioFormatError
from .tagger import ModelError, load_shipped_tagger


def _analyze(args: argparse.Namespace) -> int:
    try:
        tagger = load_shipped_tagger(backend=args.backend)
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    status = 0
    for name in args.files:
        try:
            result = analyze_file(name, tagger).as_json()
        except (AudioFormatError, OSError) as err:
            status = 1
            result = {"file": name, "error": str(err)}
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            _print_human(result)
    return status


def _print_human(result: dict[str, object]) -> None:
    if "error" in result:
        print(f"{result['file']}: cannot read: {result['error']}")
        return
    print(f"{result['file']} ({result['duration_s']} s, media {result['media_s']} s)")
    detections = result["detections"]
    assert isinstance(detections, list)
    if not detections:
        print("  nothing heard")
    for d in detections:
        note = f"  suppressed: {d['reason']}" if d["suppressed"] else ""
        print(
            f"  {d['start_s']:7.2f}–{d['end_s']:7.2f} s  {d['sound']:<12} "
            f"{d['confidence']:.2f}{note}"
        )


def _serve(args: argparse.Namespace) -> int:
    from .server import run  # noqa: PLC0415 - analyze needs neither wyoming nor asyncio

    level = "debug" if args.debug else args.log_level
    return run(args.uri, backend=args.backend, max_streams=args.max_streams, log_level=level)


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    parser = argparse.ArgumentParser(prog="python -m custom_components.guard_mode.engine")
    commands = parser.add_subparsers(dest="command", required=True)
    analyze = commands.add_parser("analyze", help="detect sounds in audio files")
    analyze.add_argument("files", nargs="+", metavar="FILE")
    analyze.add_argument("--json", action="store_true", help="one JSON object per file")
    analyze.add_argument(
        "--backend", choices=["auto", "onnxruntime", "numpy"], default="auto", help="tagger"
    )
    serve = commands.add_parser("serve", help="run the engine as a Wyoming service")
    serve.add_argument("--uri", default="tcp://0.0.0.0:10800", help="tcp://HOST:PORT to listen on")
    serve.add_argument(
        "--backend", choices=["auto", "onnxruntime", "numpy"], default="auto", help="tagger"
    )
    serve.add_argument("--max-streams", type=int, default=32, help="most clients at once")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    serve.add_argument("--debug", action="store_true", help="same as --log-level debug")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return _analyze(args)


if __name__ == "__main__":
    sys.exit(main())
