"""The detection head: the shipped file, checked when read, and refused when it is not a head."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from custom_components.guard_mode.engine.head import (
    DEFAULT_HEAD,
    HEAD_SHA256,
    HeadError,
    read_head,
    shipped_head,
)
from custom_components.guard_mode.engine.learning import unit


def test_the_shipped_head_is_the_one_the_model_card_names() -> None:
    assert hashlib.sha256(DEFAULT_HEAD.read_bytes()).hexdigest() == HEAD_SHA256
    card = (Path(__file__).parents[2] / "models" / "head" / "MODEL_CARD.md").read_text()
    assert HEAD_SHA256 in card
    head = shipped_head()
    assert set(head.classes) >= {"dog_bark", "baby_cry", "crackling_fire", "rooster"}
    probabilities = head.probabilities(unit(np.random.default_rng(0).normal(size=(5, 1024))))
    assert probabilities.shape == (5, len(head.classes))
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_a_damaged_head_is_refused(tmp_path: Path) -> None:
    data = bytearray(DEFAULT_HEAD.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "head.npz"
    damaged.write_bytes(bytes(data))
    with pytest.raises(HeadError, match="damaged"):
        read_head(damaged, HEAD_SHA256)


@pytest.mark.parametrize(
    "arrays",
    [
        {"classes": np.array(["dog_bark"]), "weights": np.zeros((512, 1)), "bias": np.zeros(1)},
        {"classes": np.array(["dog_bark"]), "weights": np.zeros((1024, 1))},
    ],
)
def test_a_file_that_is_not_a_head_is_refused(tmp_path: Path, arrays: dict) -> None:
    path = tmp_path / "head.npz"
    np.savez(path, **arrays)
    with pytest.raises(HeadError, match="head"):
        read_head(path)


def test_a_missing_head_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HeadError, match="cannot read"):
        read_head(tmp_path / "missing.npz")
