"""One BLAS thread for the engine, set in this one place.

numpy's OpenBLAS otherwise spreads the engine's small matrix products (the log-mel filter bank,
the numpy tagger, the detection head) over every core, and its idle workers spin: CPU time for no
gain at these sizes, taken from the rest of a small Home Assistant host (10 min of audio through
the analyze path: 3.7-4.1 s of CPU with the default pool, 2.5-2.7 s with one thread).
:func:`one_blas_thread` is called where the engine starts work
(:meth:`.analyzer.StreamAnalyzer.feed`, which the worker, the analyze CLI, the ``analyze_file``
action, the engine service and ``scripts/evaluate`` all run); it is a flag check after the first
call.

The limit is process-wide: the OpenBLAS that numpy bundles keeps one thread count for the whole
process (its ``openblas_set_num_threads_local`` too, measured with numpy 2.3's OpenBLAS 0.3.29),
so in Home Assistant's process other integrations' numpy products also run on one thread, as
they did since the worker first set it. threadpoolctl (well kept, pure Python, so it would run on
musl) makes the same process-wide call; it is not used because it would be a new requirement of
every Home Assistant install (manifest range, Home Assistant's pins, the add-on's hashed
requirements) for one call on the library numpy already ships. With another BLAS this does
nothing and :func:`blas_threads` says None.
"""

from __future__ import annotations

from collections.abc import Callable
import ctypes
from functools import cache
from pathlib import Path
import threading

import numpy as np

__all__ = ["blas_threads", "one_blas_thread"]

# numpy's bundled OpenBLAS prefixes its API (scipy-openblas); a system OpenBLAS does not.
_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads",
)
_GETTERS = (
    "scipy_openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
    "openblas_get_num_threads",
)
_lock = threading.Lock()
_set = False


def one_blas_thread() -> None:
    """Limit BLAS to one thread in this process (idempotent; cheap after the first call)."""
    global _set  # noqa: PLW0603 - one process-wide setting
    if _set:
        return
    with _lock:
        setter = _openblas_function(_SETTERS, 1)
        if setter is not None:
            setter(1)
        _set = True


def blas_threads() -> int | None:
    """Return how many threads BLAS calls may use now (None: not numpy's OpenBLAS)."""
    getter = _openblas_function(_GETTERS, 0)
    return None if getter is None else int(getter())


@cache
def _openblas_function(names: tuple[str, ...], int_args: int) -> Callable[..., int] | None:
    """Find the first of names (taking int_args C ints, returning an int) in numpy's OpenBLAS."""
    numpy_dir = Path(np.__file__).parent
    candidates = [
        *_loaded_libraries("openblas"),  # Linux: whatever numpy really loaded (bundled or system)
        *sorted((numpy_dir.parent / "numpy.libs").glob("*openblas*")),
        *sorted((numpy_dir / ".dylibs").glob("*openblas*")),
    ]
    for candidate in candidates:
        try:
            library = ctypes.CDLL(str(candidate))
        except OSError:
            continue
        for name in names:
            function = getattr(library, name, None)
            if function is not None:
                function.argtypes = [ctypes.c_int] * int_args
                function.restype = ctypes.c_int
                return function  # type: ignore[no-any-return]
    return None


def _loaded_libraries(fragment: str) -> list[Path]:
    """Return the shared libraries mapped into this process whose file name contains fragment."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    paths = {
        Path(parts[5]) for parts in (line.split(maxsplit=5) for line in lines) if len(parts) == 6
    }
    return sorted(path for path in paths if fragment in path.name and ".so" in path.name)
