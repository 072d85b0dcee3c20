"""Start Home Assistant for the load test, as ``hass`` starts it, in a process of its own.

    python -P scripts/tools/loadtest_hass.py --config DIR --log-file FILE [--cpu N]
        [--backoff START MAX STEADY] [--stall-timeout S]

Run with ``-P`` and from outside the repository, so that only the copy of the component in
DIR/custom_components is importable (as after a HACS install). It optionally pins the process
to one CPU (every thread Home Assistant and the engine start inherits it), sets the component's
default timeouts (``timeouts.py``: reconnect backoff and steady time, stall timeout) before
anything runs, then hands over to Home Assistant's own entry point
(``homeassistant.__main__.main``: its runner, event loop, executor, signal handling and restart
exit code).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
from dataclasses import replace
import os
import signal
import sys


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when the harness that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        sys.exit(0)


def set_timing(config: str, backoff: list[float] | None, stall_timeout: float | None) -> None:
    """Set the component's reconnect timing (its default timeouts) in the config dir's copy."""
    sys.path.insert(0, config)
    try:
        from custom_components.guard_mode import timeouts  # noqa: PLC0415

        waits = timeouts.DEFAULT_TIMEOUTS
        if backoff is not None:
            start, longest, steady = backoff
            waits = replace(waits, backoff_start_s=start, backoff_max_s=longest, steady_s=steady)
        if stall_timeout is not None:
            waits = replace(waits, stall_s=stall_timeout)
        timeouts.DEFAULT_TIMEOUTS = waits
    finally:
        sys.path.remove(config)  # as Home Assistant leaves it: it mounts the dir only to import


def main() -> int:
    """Prepare, then run Home Assistant; return its exit code (100: restart requested)."""
    die_with_parent()
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--log-file", required=True)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--backoff", type=float, nargs=3, default=None)
    parser.add_argument("--stall-timeout", type=float, default=None)
    args = parser.parse_args()
    config = os.path.abspath(args.config)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.backoff is not None or args.stall_timeout is not None:
        set_timing(config, args.backoff, args.stall_timeout)
    from homeassistant.__main__ import main as hass_main  # noqa: PLC0415

    sys.argv = ["hass", "--config", config, "--log-file", args.log_file]
    sys.argv += ["--skip-pip", "--log-no-color"]
    return hass_main()


if __name__ == "__main__":
    sys.exit(main())
