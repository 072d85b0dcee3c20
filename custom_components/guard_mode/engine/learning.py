"""Learning from the household: false alarms to ignore and custom sounds taught by example.

Both work on the tagger's 1024-d embeddings (YAMNet's layer before the classifier), compared by
cosine similarity of unit vectors. Only embeddings are kept, never audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]
Vectors = npt.NDArray[np.floating[Any]]  # float32, or float16 as evidence carries them
EMBEDDING_SIZE = 1024
# A candidate this similar to a window the user marked "not a threat" is that sound again.
# Chosen on the dev corpus: models/yamnet/THRESHOLDS.md, "Learning".
LEARNED_SIMILARITY = 0.95
MIN_EXAMPLES = 3
MAX_EXAMPLES = 10
MAX_PROTOTYPES = 64  # windows kept per custom sound
MIN_MARGIN = 0.04  # examples must be this much more alike than background is to them
# Unrelated sounds reach this similarity to each other (dev corpus: p90 of different classes),
# so a threshold never goes below what background could reach even when none was heard yet.
BACKGROUND_FLOOR = 0.6


def unit(vectors: npt.ArrayLike) -> Floats:
    """Return the rows of vectors scaled to length 1 (zero rows stay zero)."""
    array = np.atleast_2d(np.asarray(vectors, np.float32))
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.asarray(array / np.maximum(norms, 1e-9), np.float32)


def best_similarity(candidates: Vectors, references: Vectors) -> float:
    """Return the highest cosine similarity between any candidate and any reference (unit rows)."""
    if not len(candidates) or not len(references):
        return -1.0
    return float((candidates @ references.T).max())


class TeachError(ValueError):
    """Examples that can't make a good detector; ``reason`` says why (a translation key)."""

    def __init__(self, reason: str, message: str) -> None:
        """Describe the problem in plain words."""
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CustomSound:
    """A sound the household taught: prototypes and the similarity at which it is heard."""

    key: str  # e.g. "custom_doorbell": the sound key of its entities and events
    name: str
    prototypes: Floats  # [K, 1024] unit vectors
    threshold: float

    def similarity(self, embeddings: Vectors) -> npt.NDArray[np.float32]:
        """Return each window's best similarity to the prototypes."""
        if not len(embeddings):
            return np.zeros(0, np.float32)
        return np.asarray((embeddings @ self.prototypes.T).max(axis=1), np.float32)


def teach(
    key: str, name: str, examples: Sequence[Vectors], background: Vectors
) -> tuple[CustomSound, dict[str, float]]:
    """Build a custom sound from 3–10 examples (each: its windows' embeddings).

    The threshold sits between how alike the examples are to each other (the least alike pair
    of examples) and how alike the background audio of the satellite is to them (the strongest
    match). Too few examples, or examples no more alike than background,
    raise TeachError instead of making a detector that would miss or misfire. Returns the
    sound and the figures that set its threshold.
    """
    examples = [unit(e) for e in examples if len(e)]
    if len(examples) < MIN_EXAMPLES:
        raise TeachError(
            "too_few_examples",
            f"{len(examples)} usable examples: at least {MIN_EXAMPLES} are needed",
        )
    if len(examples) > MAX_EXAMPLES:
        raise TeachError(
            "too_many_examples", f"at most {MAX_EXAMPLES} examples, got {len(examples)}"
        )
    # Every example must match every other one: the least alike pair sets the bar.
    weakest = min(
        best_similarity(examples[i], examples[j])
        for i in range(len(examples))
        for j in range(i + 1, len(examples))
    )
    background = unit(background) if len(background) else np.zeros((0, EMBEDDING_SIZE), np.float32)
    prototypes = np.concatenate(examples)
    if len(prototypes) > MAX_PROTOTYPES:
        keep = np.linspace(0, len(prototypes) - 1, MAX_PROTOTYPES).round().astype(int)
        prototypes = prototypes[keep]
    measured = float((background @ prototypes.T).max()) if len(background) else 0.0
    strongest_background = max(measured, BACKGROUND_FLOOR)
    if weakest - strongest_background < MIN_MARGIN:
        raise TeachError(
            "inconsistent_examples",
            f"the examples are too different from each other (weakest match {weakest:.2f}) "
            f"compared with ordinary sound at this microphone (up to {strongest_background:.2f})",
        )
    threshold = strongest_background + 0.5 * (weakest - strongest_background)
    figures = {
        "examples": float(len(examples)),
        "weakest_example_match": round(weakest, 3),
        "strongest_background_match": round(measured, 3),
        "background_windows": float(len(background)),
        "threshold": round(threshold, 3),
    }
    return CustomSound(key, name, prototypes, threshold), figures
