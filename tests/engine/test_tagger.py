"""The tagger on the real model: both backends, their agreement, batching and load errors."""

from __future__ import annotations

import csv
from pathlib import Path
import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from custom_components.guard_mode.engine import frontend as fe
from custom_components.guard_mode.engine.analyze import analyze_samples
from custom_components.guard_mode.engine.blas import blas_threads
from custom_components.guard_mode.engine.tagger import (
    DEFAULT_MODEL,
    EMBEDDING_SIZE,
    MAX_BATCH,
    NUM_CLASSES,
    NUMPY_TOLERANCE,
    ModelError,
    Tagger,
    load_shipped_tagger,
    load_tagger,
    onnxruntime_available,
    weights_path,
)
from custom_components.guard_mode.engine.yamnet_numpy import WEIGHTS_SHA256

from ..helpers import BACKENDS, needs_ort, zero_block

RATE = fe.SAMPLE_RATE


def _labels() -> list[str]:
    with (DEFAULT_MODEL.parent / "yamnet_class_map.csv").open(newline="") as handle:
        return [row["display_name"] for row in csv.DictReader(handle)]


def _synthetic() -> dict[str, npt.NDArray[np.float32]]:
    """Two seconds of each kind of synthetic audio."""
    t = np.arange(2 * RATE) / RATE
    rng = np.random.default_rng(7)
    signals = {
        "silence": np.zeros_like(t),
        "tone_440": 0.5 * np.sin(2 * np.pi * 440 * t),
        "tone_3100": 0.3 * np.sin(2 * np.pi * 3100 * t),
        "chirp": 0.5 * np.sin(2 * np.pi * (200 * t + 950 * t**2)),
        "white_noise": 0.3 * rng.standard_normal(len(t)),
        "noise_bursts": 0.5 * rng.standard_normal(len(t)) * ((t % 0.5) < 0.1),
        "clicks": np.where(np.arange(len(t)) % 4000 == 0, 0.9, 0.0),
        "loud_square": np.sign(np.sin(2 * np.pi * 520 * t)),
    }
    return {name: x.astype(np.float32) for name, x in signals.items()}


def _patches(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return fe.patches(fe.log_mel(fe.stft_magnitude(samples)))


@pytest.fixture(scope="module")
def synthetic() -> dict[str, npt.NDArray[np.float32]]:
    return {name: _patches(x) for name, x in _synthetic().items()}


@pytest.fixture(scope="module")
def all_patches(synthetic: dict[str, npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    return np.concatenate(list(synthetic.values()))


_TAGGERS: dict[str, Tagger] = {}


def tagger(backend: str) -> Tagger:
    if backend not in _TAGGERS:
        _TAGGERS[backend] = load_tagger(backend=backend)  # type: ignore[arg-type]
    return _TAGGERS[backend]


# -- behaviour -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_scores_and_embeddings(backend: str, all_patches: npt.NDArray[np.float32]) -> None:
    model = tagger(backend)
    assert model.backend == backend
    assert model.model_path == (
        DEFAULT_MODEL if backend == "onnxruntime" else weights_path(DEFAULT_MODEL)
    )
    out = model.infer(all_patches, embeddings=True)
    assert out.scores.shape == (len(all_patches), NUM_CLASSES)
    assert out.scores.dtype == np.float32
    assert np.isfinite(out.scores).all()
    assert out.scores.min() >= 0
    assert out.scores.max() <= 1
    assert out.embeddings is not None
    assert out.embeddings.shape == (len(all_patches), EMBEDDING_SIZE)
    assert out.embeddings.dtype == np.float32
    assert np.isfinite(out.embeddings).all()
    assert out.embeddings.min() >= 0  # average of ReLU outputs
    assert model.infer(all_patches[:2]).embeddings is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_sounds_get_their_labels(
    backend: str, synthetic: dict[str, npt.NDArray[np.float32]]
) -> None:
    labels = _labels()
    assert len(labels) == NUM_CLASSES

    def top(name: str, count: int) -> list[str]:
        scores = tagger(backend).infer(synthetic[name]).scores.max(axis=0)
        return [labels[i] for i in np.argsort(-scores)[:count]]

    assert top("silence", 1) == ["Silence"]
    assert "White noise" in top("white_noise", 3)
    assert {"Beep, bleep", "Sine wave"} & set(top("tone_3100", 2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_equals_single_calls(backend: str, all_patches: npt.NDArray[np.float32]) -> None:
    model = tagger(backend)
    batch = model.infer(all_patches, embeddings=True)
    assert batch.embeddings is not None
    for i in range(0, len(all_patches), 5):
        one = model.infer(all_patches[i : i + 1], embeddings=True)
        assert one.embeddings is not None
        np.testing.assert_allclose(one.scores[0], batch.scores[i], atol=1e-6)
        np.testing.assert_allclose(one.embeddings[0], batch.embeddings[i], atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend: str) -> None:
    out = tagger(backend).infer(np.zeros((0, 96, 64), np.float32), embeddings=True)
    assert out.scores.shape == (0, NUM_CLASSES)
    assert out.embeddings is not None
    assert out.embeddings.shape == (0, EMBEDDING_SIZE)
    assert tagger(backend).infer(np.zeros((0, 96, 64), np.float32)).embeddings is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_patch_shape_is_a_value_error(backend: str) -> None:
    with pytest.raises(ValueError, match="patches must be"):
        tagger(backend).infer(np.zeros((2, 96, 63), np.float32))


@needs_ort
def test_numpy_agrees_with_onnxruntime(all_patches: npt.NDArray[np.float32]) -> None:
    ort = tagger("onnxruntime").infer(all_patches, embeddings=True)
    num = tagger("numpy").infer(all_patches, embeddings=True)
    assert np.abs(ort.scores - num.scores).max() <= NUMPY_TOLERANCE
    np.testing.assert_array_equal(ort.scores.argmax(axis=1), num.scores.argmax(axis=1))
    assert ort.embeddings is not None
    assert num.embeddings is not None
    # one uint8 step of the pooled layer at most (measured: identical)
    assert np.abs(ort.embeddings - num.embeddings).max() <= 0.03


@needs_ort
def test_numpy_computes_what_onnxruntime_computes() -> None:
    """Same integer arithmetic: identical embeddings, scores to float rounding, on patches from
    silence to clipping (saturating the input quantization), in a batch larger than a slice."""
    rng = np.random.default_rng(3)
    patches = np.concatenate(
        [
            rng.uniform(-12.0, 6.0, (MAX_BATCH + 3, 96, 64)),
            rng.normal(-4.0, 3.0, (4, 96, 64)),
            np.full((1, 96, 64), np.log(fe.LOG_OFFSET)),  # digital silence
            np.full((1, 96, 64), 9.0),  # beyond the input's range
        ]
    ).astype(np.float32)
    ort = tagger("onnxruntime").infer(patches, embeddings=True)
    num = tagger("numpy").infer(patches, embeddings=True)
    np.testing.assert_array_equal(num.embeddings, ort.embeddings)
    np.testing.assert_allclose(num.scores, ort.scores, rtol=0, atol=1e-6)


def test_auto_backend() -> None:
    model = load_tagger()
    assert model.backend == ("onnxruntime" if onnxruntime_available() else "numpy")
    with pytest.raises(ValueError, match="unknown tagger backend"):
        load_tagger(backend="tflite")  # type: ignore[arg-type]


# -- load errors ---------------------------------------------------------------------------------


@needs_ort
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"absent\.onnx: model file not found"):
        load_tagger(tmp_path / "absent.onnx", backend="onnxruntime")


@needs_ort
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_truncated_file(fraction: float, tmp_path: Path) -> None:
    data = DEFAULT_MODEL.read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelError, match=r"truncated\.onnx"):
        load_tagger(path, backend="onnxruntime")


@needs_ort
@pytest.mark.parametrize(
    "content",
    [
        np.random.default_rng(1).integers(0, 256, 10000, np.uint8).tobytes(),
        b"",
        b"this is not a model\n",
    ],
)
def test_garbage_file(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=r"garbage\.onnx"):
        load_tagger(path, backend="onnxruntime")


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (None, "weights file not found"),
        (lambda data: data[: len(data) // 2], "the file is damaged"),
        (lambda data: b"", "the file is damaged"),
        (zero_block, "the file is damaged"),
    ],
    ids=["missing", "truncated", "empty", "zeroed"],
)
def test_numpy_backend_loads_only_the_shipped_weights(
    tmp_path: Path, damage: Any, says: str
) -> None:
    """The weights beside the model are checked by their sha256 (also in the model card)."""
    card = (Path(__file__).parents[2] / "models" / "yamnet" / "MODEL_CARD.md").read_text()
    assert WEIGHTS_SHA256 in card
    model = tmp_path / "yamnet.onnx"
    if damage is not None:
        weights_path(model).write_bytes(damage(weights_path(DEFAULT_MODEL).read_bytes()))
    with pytest.raises(ModelError, match=rf"yamnet\.npz: {says}"):
        load_shipped_tagger(model, backend="numpy")


def _save(model: object, path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _flatten_model(path: Path, width: int, scores: int = NUM_CLASSES) -> Path:
    """A valid model with input patches [batch,1,96,width] and flattening outputs."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper  # noqa: PLC0415

    nodes = [
        helper.make_node("Flatten", ["patches"], ["scores"], axis=1),
        helper.make_node("Flatten", ["patches"], ["embedding"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "wrong",
        [helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["batch", 1, 96, width])],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", scores]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 96 * width]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    del onnx
    return _save(model, path)


@needs_ort
def test_wrong_input_shape(tmp_path: Path) -> None:
    path = _flatten_model(tmp_path / "narrow.onnx", width=32)
    with pytest.raises(ModelError) as info:
        load_tagger(path, backend="onnxruntime")
    message = str(info.value)
    assert "narrow.onnx: expected input 'patches' float32 [N,1,96,64]" in message
    assert "found 'patches' float32 [batch,1,96,32]" in message


@needs_ort
def test_wrong_output_shape(tmp_path: Path) -> None:
    path = _flatten_model(tmp_path / "outputs.onnx", width=64, scores=6144)
    with pytest.raises(ModelError, match=r"outputs\.onnx: expected output 'scores' float32"):
        load_tagger(path, backend="onnxruntime")


# -- BLAS threads ------------------------------------------------------------------------------


def test_running_the_engine_sets_one_blas_thread() -> None:
    """Any path that runs the engine (here: the analyze path on its own thread) limits BLAS."""
    if blas_threads() is None:
        pytest.skip("numpy's BLAS here is not OpenBLAS")
    thread = threading.Thread(
        target=lambda: analyze_samples(np.zeros(RATE, np.float32), tagger("numpy"))
    )
    thread.start()
    thread.join()
    assert blas_threads() == 1
