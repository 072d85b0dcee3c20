"""Command line: ``python -m custom_components.guard_mode.engine analyze FILE... [--json]``.

``analyze`` refuses files longer than ``--max-seconds`` (15 min by default: the whole file is
decoded in memory, about 64 kB per second of audio). ``... engine serve [--uri
tcp://127.0.0.1:10800]`` runs the engine as a Wyoming service; it needs a token
(``$GUARD_MODE_ENGINE_TOKEN`` or ``--token-file``) and speaks TLS with ``--tls-cert``.
"""

from __future__ import annotations

import argparse
import json
import sys

from .analyze import analyze_file
from .audio import AudioFormatError
from .head import HeadError, shipped_head
from .tagger import ModelError, load_shipped_tagger

DEFAULT_MAX_SECONDS = 900.0


def _analyze(args: argparse.Namespace) -> int:
    try:
        tagger = load_shipped_tagger(backend=args.backend)
        shipped_head()
    except (ModelError, HeadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    status = 0
    for name in args.files:
        try:
            limit = args.max_seconds or None
            result = analyze_file(name, tagger, max_seconds=limit).as_json()
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
    return run(
        args.uri,
        backend=args.backend,
        max_streams=args.max_streams,
        log_level=level,
        token_file=args.token_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text}")
    return value


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
    analyze.add_argument(
        "--max-seconds",
        type=_seconds,
        default=DEFAULT_MAX_SECONDS,
        help=f"refuse longer files (default {DEFAULT_MAX_SECONDS:g} s; 0: no limit)",
    )
    serve = commands.add_parser("serve", help="run the engine as a Wyoming service")
    serve.add_argument(
        "--uri",
        default="tcp://127.0.0.1:10800",
        help="tcp://HOST:PORT to listen on (default: this machine only)",
    )
    serve.add_argument(
        "--token-file",
        help="file holding the token clients must send (else $GUARD_MODE_ENGINE_TOKEN)",
    )
    serve.add_argument("--tls-cert", help="PEM certificate (chain): speak TLS only")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert (if not in that file)")
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
