"""The sound tagger: YAMNet log-mel patches in, 521 AudioSet scores (and embeddings) out.

One interface, two backends of the same int8 model:

* ``onnxruntime`` where it imports (Home Assistant Core on glibc, dev machines, the add-on), on
  ``engine/data/yamnet.onnx``;
* ``numpy`` everywhere else (Home Assistant OS / container on musl, where onnxruntime has no
  wheels): :mod:`.yamnet_numpy` runs YAMNet's fixed network on the weights exported from that
  file at build time (``yamnet.npz`` beside it) with onnxruntime's integer arithmetic; scores
  agree within :data:`NUMPY_TOLERANCE` (measured: equal).

A tagger is loaded once and shared by all streams. ``infer`` is meant to be called from one worker
thread at a time (onnxruntime sessions allow concurrent ``run`` calls, the numpy backend keeps no
state between calls either, but neither is tuned for it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
import hashlib
import importlib
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from .frontend import MEL_BANDS, PATCH_FRAMES
from .yamnet_numpy import ModelError, YamnetNumpy

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDING_SIZE",
    "NUMPY_TOLERANCE",
    "NUM_CLASSES",
    "Backend",
    "ModelError",
    "Tagger",
    "TaggerOutput",
    "load_tagger",
    "onnxruntime_available",
]

Floats = npt.NDArray[np.float32]
Backend = Literal["auto", "onnxruntime", "numpy"]  # what load_tagger accepts

DEFAULT_MODEL = Path(__file__).parent / "data" / "yamnet.onnx"
# Its sha256, as in models/yamnet/MODEL_CARD.md (`models/build_yamnet.py --check` rebuilds it).
SHIPPED_SHA256 = "89de43ebe2c9a8a2947c422170db09f2cbb8d1540c5117fb41eefe1e09c5de50"
# The numpy backend's weights, beside the model (their sha256 is checked whenever they load).
WEIGHTS_SUFFIX = ".npz"
NUM_CLASSES = 521
EMBEDDING_SIZE = 1024
INPUT_NAME = "patches"
SCORES_NAME = "scores"
EMBEDDING_NAME = "embedding"
# Largest |numpy score - onnxruntime score| allowed (measured: identical embeddings and scores
# within 2e-7; the margin covers onnxruntime kernels that round differently on other CPUs, e.g.
# its fixed-point pooling on aarch64). See models/yamnet/MODEL_CARD.md.
NUMPY_TOLERANCE = 0.02
# Larger batches are run in slices of this many patches: bounded memory (onnxruntime's arena
# keeps what it once needed), no loss of speed.
MAX_BATCH = 16


class TaggerOutput(NamedTuple):
    """Scores [N, 521] in [0, 1]; embeddings [N, 1024] when requested, else None."""

    scores: Floats
    embeddings: Floats | None


class Tagger(Protocol):
    """What the engine uses: ``infer`` on a batch of patches."""

    backend: str  # "onnxruntime" or "numpy"
    model_path: Path

    def infer(self, patches: Floats, *, embeddings: bool = False) -> TaggerOutput:
        """Tag patches [N, 96, 64] (N may be 0)."""
        ...


@cache
def _onnxruntime() -> Any | None:
    """Import onnxruntime once, lazily; None when it can't be imported."""
    try:
        return importlib.import_module("onnxruntime")
    except ImportError, OSError:  # not installed, or a wheel that doesn't load here
        return None


def onnxruntime_available() -> bool:
    """Return True when onnxruntime imports in this interpreter."""
    return _onnxruntime() is not None


def load_tagger(path: Path = DEFAULT_MODEL, backend: Backend = "auto", threads: int = 1) -> Tagger:
    """Load the model with a backend ("auto": onnxruntime when it imports, else numpy).

    onnxruntime reads the ONNX file at path, with ``threads`` intra-op threads; numpy reads the
    weights beside it (:func:`weights_path`). Raises ModelError, naming the file and what was
    expected, when the file is missing, unreadable, corrupt, or not a model with input
    ``patches`` float32 [N,1,96,64] and outputs ``scores`` float32 [N,521] and ``embedding``
    float32 [N,1024] (numpy: not the shipped weights); ValueError for an unknown backend and
    ModelError when onnxruntime was asked for but can't be imported.
    """
    path = Path(path)
    if backend not in ("auto", "onnxruntime", "numpy"):
        raise ValueError(f"unknown tagger backend {backend!r}")
    if backend == "auto":
        backend = "onnxruntime" if onnxruntime_available() else "numpy"
    if backend == "numpy":
        return _NumpyTagger(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found (expected the YAMNet ONNX model)")
    ort = _onnxruntime()
    if ort is None:
        raise ModelError(f"{path}: the onnxruntime backend was requested but can't be imported")
    return _OrtTagger(ort, path, threads)


def load_shipped_tagger(path: Path = DEFAULT_MODEL, backend: Backend = "auto") -> Tagger:
    """Load the model Guard Mode ships, from path (blocking).

    Besides what load_tagger checks, the bytes must be the shipped ones: damage that leaves a
    loadable model (a block of zeros in the weights) would otherwise shift every score. (The
    numpy backend's weights are always checked so.)
    """
    tagger = load_tagger(path, backend)
    if tagger.backend == "onnxruntime" and _sha256(path) != SHIPPED_SHA256:
        raise ModelError(f"{path}: the file is damaged (it is not the model Guard Mode ships)")
    return tagger


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


_Spec = list[tuple[str, str, tuple[int, ...]]]


class _Arg(NamedTuple):
    """An input or output of an onnxruntime session: name, element type, shape."""

    name: str
    dtype: str  # numpy's name: float32, uint8, ...
    shape: tuple[int | str | None, ...] | None

    def describe(self) -> str:
        """Return e.g. ``'patches' float32 [batch,1,96,64]``."""
        dims = (
            "?"
            if self.shape is None
            else ",".join("?" if d is None else str(d) for d in self.shape)
        )
        return f"'{self.name}' {self.dtype} [{dims}]"


def _expected() -> tuple[_Spec, _Spec]:
    """Return the expected (name, element type, dims after the batch) of inputs, outputs."""
    inputs: _Spec = [(INPUT_NAME, "float32", (1, PATCH_FRAMES, MEL_BANDS))]
    outputs: _Spec = [
        (SCORES_NAME, "float32", (NUM_CLASSES,)),
        (EMBEDDING_NAME, "float32", (EMBEDDING_SIZE,)),
    ]
    return inputs, outputs


def _check_io(path: Path, inputs: Sequence[_Arg], outputs: Sequence[_Arg]) -> None:
    """Raise ModelError unless the model has exactly the expected inputs and outputs."""
    want_in, want_out = _expected()
    for kind, want, have in (("input", want_in, inputs), ("output", want_out, outputs)):
        by_name = {info.name: info for info in have}
        for name, dtype, dims in want:
            info = by_name.get(name)
            ok = (
                info is not None
                and info.dtype == dtype
                and info.shape is not None
                and len(info.shape) == len(dims) + 1
                and not isinstance(info.shape[0], int)  # a dynamic batch dimension
                and tuple(info.shape[1:]) == dims
            )
            if not ok:
                found = ", ".join(v.describe() for v in have) or "nothing"
                expected = f"'{name}' {dtype} [N,{','.join(str(d) for d in dims)}]"
                raise ModelError(f"{path}: expected {kind} {expected}, found {found}")
        if kind == "input" and len(have) != len(want):
            found = ", ".join(v.describe() for v in have)
            raise ModelError(f"{path}: expected one input 'patches', found {found}")


def _as_batch(patches: Floats) -> Floats:
    """Validate patches [N, 96, 64] and return them as float32 [N, 1, 96, 64]."""
    array = np.asarray(patches, dtype=np.float32)
    if array.ndim != 3 or array.shape[1:] != (PATCH_FRAMES, MEL_BANDS):
        raise ValueError(f"patches must be [N, {PATCH_FRAMES}, {MEL_BANDS}], got {array.shape}")
    return np.ascontiguousarray(array[:, np.newaxis])


def _empty(embeddings: bool) -> TaggerOutput:
    return TaggerOutput(
        np.zeros((0, NUM_CLASSES), np.float32),
        np.zeros((0, EMBEDDING_SIZE), np.float32) if embeddings else None,
    )


def _in_slices(
    batch: Floats, names: list[str], run: Callable[[Floats], Sequence[Floats]]
) -> TaggerOutput:
    """Run batch [N, 1, 96, 64] in slices of MAX_BATCH; return scores (and embeddings)."""
    parts = [run(batch[start : start + MAX_BATCH]) for start in range(0, len(batch), MAX_BATCH)]
    outputs = [
        parts[0][i] if len(parts) == 1 else np.concatenate([part[i] for part in parts])
        for i in range(len(names))
    ]
    return TaggerOutput(outputs[0], outputs[1] if len(names) > 1 else None)


class _OrtTagger:
    """onnxruntime backend: one CPU session, sequential, ``threads`` intra-op threads."""

    backend = "onnxruntime"

    def __init__(self, ort: Any, path: Path, threads: int) -> None:
        self.model_path = path
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        # Idle worker threads must not spin: CPU time, not latency, is what counts here.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # On x86 CPUs without VNNI (AVX2 only: many Home Assistant hosts) onnxruntime's fast
        # u8s8 kernels saturate 16-bit sums and shift scores by up to 0.9; its u8u8 kernels
        # compute exactly what the model (and the numpy backend) does. No effect elsewhere.
        options.add_session_config_entry("session.x64quantprecision", "1")
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from PATH failed:WHY"
            detail = detail.partition(f"{path} failed:")[2].strip() or detail
            raise ModelError(f"{path}: not a valid ONNX model ({detail})") from err
        _check_io(
            path,
            [_arg(arg) for arg in self._session.get_inputs()],
            [_arg(arg) for arg in self._session.get_outputs()],
        )

    def infer(self, patches: Floats, *, embeddings: bool = False) -> TaggerOutput:
        """Tag patches [N, 96, 64]."""
        batch = _as_batch(patches)
        if not len(batch):
            return _empty(embeddings)
        names = [SCORES_NAME, EMBEDDING_NAME] if embeddings else [SCORES_NAME]
        return _in_slices(batch, names, lambda part: self._session.run(names, {INPUT_NAME: part}))


def _arg(arg: Any) -> _Arg:
    """Convert an onnxruntime NodeArg ('tensor(float)', [batch, 1, 96, 64])."""
    dtype = str(arg.type).removeprefix("tensor(").removesuffix(")")
    shape = arg.shape
    dims = None if shape is None else tuple(d if isinstance(d, int) else str(d) for d in shape)
    return _Arg(arg.name, {"float": "float32", "double": "float64"}.get(dtype, dtype), dims)


def weights_path(model: Path) -> Path:
    """Return the numpy backend's weights file that belongs to an ONNX model file."""
    return model.with_suffix(WEIGHTS_SUFFIX)


class _NumpyTagger:
    """numpy backend: :class:`.yamnet_numpy.YamnetNumpy` on the weights beside the model."""

    backend = "numpy"

    def __init__(self, path: Path) -> None:
        self.model_path = weights_path(path)
        self._network = YamnetNumpy(self.model_path)

    def infer(self, patches: Floats, *, embeddings: bool = False) -> TaggerOutput:
        """Tag patches [N, 96, 64]."""
        batch = _as_batch(patches)[:, 0]
        if not len(batch):
            return _empty(embeddings)
        parts = [
            self._network.run(batch[start : start + MAX_BATCH], embeddings=embeddings)
            for start in range(0, len(batch), MAX_BATCH)
        ]
        if len(parts) == 1:
            return TaggerOutput(*parts[0])
        scores = np.concatenate([part[0] for part in parts])
        vectors = [part[1] for part in parts if part[1] is not None]
        return TaggerOutput(scores, np.concatenate(vectors) if embeddings else None)
