"""The detection head: small per-class classifiers on the tagger's 1024-d embeddings.

One logistic regression per class (weights [1024, K], biases [K], trained by
``models/head/train_head.py`` on audio whose licence allows it; figures and data in
``models/head/MODEL_CARD.md``). Its classes are of two kinds:

* sounds Guard Mode alerts on (``dog_bark``, ``baby_cry``): a window the head is sure of counts
  as a hit even where YAMNet's own labels spread the sound over classes that miss it;
* *confusers*, ordinary sounds that YAMNet's labels mistake for a threat (a crackling fire for
  gunshots or breaking glass, a clock's tick for glass, a rooster for a dog): a window the head
  is sure of does not count for the sounds they are mistaken for.

The file is plain ``.npz`` (no pickle), checked against its sha256 when loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]

DEFAULT_HEAD = Path(__file__).parent / "data" / "head.npz"
HEAD_SHA256 = "2e0c2836273b243f8362df01169e60eb3a8b6f5ca0730c3a6fe964e2ae58fcd9"
EMBEDDING_SIZE = 1024


class HeadError(ValueError):
    """The head file is missing, damaged or not a head."""

    def __init__(self, path: Path, problem: str) -> None:
        """Say which file and what is wrong with it."""
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class DetectionHead:
    """Per-class logistic regressions on unit-length embeddings."""

    classes: tuple[str, ...]
    weights: Floats  # [1024, K]
    bias: Floats  # [K]

    def probabilities(self, embeddings: Floats) -> Floats:
        """Return [N, K] probabilities for unit-length embeddings [N, 1024]."""
        logits = embeddings @ self.weights + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0))), np.float32)


def read_head(path: Path, sha256: str | None = None) -> DetectionHead:
    """Read a head file; with sha256, refuse a file whose bytes differ."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise HeadError(path, f"cannot read the detection head ({err.strerror})") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise HeadError(path, "the file is damaged (it is not the head Guard Mode ships)")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            classes = tuple(str(name) for name in arrays["classes"])
            weights = np.asarray(arrays["weights"], np.float32)
            bias = np.asarray(arrays["bias"], np.float32)
    except (OSError, KeyError, ValueError) as err:
        raise HeadError(path, f"not a detection head ({err})") from None
    if weights.shape != (EMBEDDING_SIZE, len(classes)) or bias.shape != (len(classes),):
        raise HeadError(path, f"weights {weights.shape} and bias {bias.shape} don't match")
    return DetectionHead(classes, weights, bias)


@cache
def shipped_head() -> DetectionHead:
    """Return the head Guard Mode ships, read and checked once.

    It is kept: an update that writes a newer file while the process runs changes nothing until
    it restarts.
    """
    return read_head(DEFAULT_HEAD, HEAD_SHA256)
