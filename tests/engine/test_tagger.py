"""The tagger on the real model: both backends, their agreement, batching and load errors."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from custom_components.guard_mode.engine import frontend as fe
from custom_components.guard_mode.engine.tagger import (
    DEFAULT_MODEL,
    EMBEDDING_SIZE,
    NUM_CLASSES,
    NUMPY_TOLERANCE,
    ModelError,
    Tagger,
    load_tagger,
    onnxruntime_available,
)
from custom_components.guard_mode.engine.yamnet_numpy import NumpyNetwork

RATE = fe.SAMPLE_RATE
BACKENDS = [
    "numpy",
    pytest.param(
        "onnxruntime",
        marks=pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime missing"),
    ),
]
needs_ort = pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime missing")


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
    assert model.model_path == DEFAULT_MODEL
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


def test_auto_backend() -> None:
    model = load_tagger()
    assert model.backend == ("onnxruntime" if onnxruntime_available() else "numpy")
    with pytest.raises(ValueError, match="unknown tagger backend"):
        load_tagger(backend="tflite")  # type: ignore[arg-type]


# -- load errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_file(backend: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"absent\.onnx: model file not found"):
        load_tagger(tmp_path / "absent.onnx", backend=backend)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_truncated_file(backend: str, fraction: float, tmp_path: Path) -> None:
    data = DEFAULT_MODEL.read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelError, match=r"truncated\.onnx"):
        load_tagger(path, backend=backend)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "content",
    [
        np.random.default_rng(1).integers(0, 256, 10000, np.uint8).tobytes(),
        b"",
        b"this is not a model\n",
    ],
)
def test_garbage_file(backend: str, content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=r"garbage\.onnx"):
        load_tagger(path, backend=backend)  # type: ignore[arg-type]


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


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_input_shape(backend: str, tmp_path: Path) -> None:
    path = _flatten_model(tmp_path / "narrow.onnx", width=32)
    with pytest.raises(ModelError) as info:
        load_tagger(path, backend=backend)  # type: ignore[arg-type]
    message = str(info.value)
    assert "narrow.onnx: expected input 'patches' float32 [N,1,96,64]" in message
    assert "found 'patches' float32 [batch,1,96,32]" in message


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_output_shape(backend: str, tmp_path: Path) -> None:
    path = _flatten_model(tmp_path / "outputs.onnx", width=64, scores=6144)
    with pytest.raises(ModelError, match=r"outputs\.onnx: expected output 'scores' float32"):
        load_tagger(path, backend=backend)  # type: ignore[arg-type]


# -- the numpy interpreter beyond the shipped graph ----------------------------------------------


def test_numpy_backend_rejects_unknown_operators(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper  # noqa: PLC0415

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], name="soft")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    path = _save(model, tmp_path / "softmax.onnx")
    with pytest.raises(ModelError, match=r"softmax\.onnx: .*Softmax.*'soft'"):
        NumpyNetwork.load(path)


@needs_ort
def test_numpy_float_graph_matches_onnxruntime(tmp_path: Path) -> None:
    """Float convolutions of odd sizes (dense strided, depthwise, 1x1), pooling and Gemm."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415
    import onnxruntime  # noqa: PLC0415

    rng = np.random.default_rng(5)

    def weight(name: str, *shape: int) -> Any:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], group=6, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c2", "w3", "b3"], ["c3"]),
        helper.make_node("Conv", ["c3", "w4"], ["c4"], group=5, strides=[2, 1], pads=[1, 0, 0, 1]),
        helper.make_node("GlobalAveragePool", ["c4"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w5", "b5"], ["g"], transB=1, alpha=0.5),
        helper.make_node("Sigmoid", ["g"], ["y"]),
    ]
    inits = [
        weight("w1", 6, 3, 3, 3),
        weight("b1", 6),
        weight("w2", 6, 1, 3, 3),
        weight("w3", 5, 6, 1, 1),
        weight("b3", 5),
        weight("w4", 5, 1, 3, 2),
        weight("w5", 4, 5),
        weight("b5", 4),
    ]
    graph = helper.make_graph(
        nodes,
        "float",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 11, 9])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4]),
            helper.make_tensor_value_info("c4", TensorProto.FLOAT, ["n", 5, 2, 4]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    path = _save(model, tmp_path / "float.onnx")
    x = rng.standard_normal((3, 3, 11, 9)).astype(np.float32)
    want = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )
    have = NumpyNetwork.load(path).run({"x": x}, ["y", "c4"])
    np.testing.assert_allclose(have[0], want[0], atol=1e-5)
    np.testing.assert_allclose(have[1], want[1], atol=1e-4, rtol=1e-5)


@needs_ort
def test_numpy_quantized_graph_matches_onnxruntime(tmp_path: Path) -> None:
    """A small QDQ graph: fused int8 convolutions (dense, depthwise, 1x1), an unfused one whose
    float output is a graph output, quantized pooling, and a Gemm with a quantized output."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415
    import onnxruntime  # noqa: PLC0415

    rng = np.random.default_rng(11)
    inits = []
    nodes = []

    def const(name: str, value: npt.NDArray[np.generic]) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def act_qdq(x: str, scale: float, zero_point: int = 0) -> str:
        s = const(f"{x}_s", np.array(scale, np.float32))
        z = const(f"{x}_z", np.array(zero_point, np.uint8))
        nodes.append(helper.make_node("QuantizeLinear", [x, s, z], [f"{x}_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{x}_q", s, z], [f"{x}_dq"]))
        return f"{x}_dq"

    def conv(x: str, x_scale: float, out: str, shape: tuple[int, ...], **attrs: Any) -> None:
        w_scale = rng.uniform(0.002, 0.02, shape[0]).astype(np.float32)
        w_q = const(f"{out}_w", rng.integers(-127, 128, shape).astype(np.int8))
        w_s = const(f"{out}_ws", w_scale)
        w_z = const(f"{out}_wz", np.zeros(shape[0], np.int8))
        nodes.append(helper.make_node("DequantizeLinear", [w_q, w_s, w_z], [f"{out}_wdq"], axis=0))
        b_q = const(f"{out}_b", rng.integers(-2000, 2000, shape[0]).astype(np.int32))
        b_s = const(f"{out}_bs", (np.float32(x_scale) * w_scale).astype(np.float32))
        b_z = const(f"{out}_bz", np.zeros(shape[0], np.int32))
        nodes.append(helper.make_node("DequantizeLinear", [b_q, b_s, b_z], [f"{out}_bdq"], axis=0))
        nodes.append(helper.make_node("Conv", [x, f"{out}_wdq", f"{out}_bdq"], [out], **attrs))

    x = act_qdq("x", 0.05, 128)
    conv(x, 0.05, "c1", (8, 3, 3, 3), strides=[2, 2], pads=[0, 0, 1, 1])
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"]))
    r1 = act_qdq("r1", 0.04)
    conv(r1, 0.04, "c2", (8, 1, 3, 3), group=8, pads=[1, 1, 1, 1])
    nodes.append(helper.make_node("Relu", ["c2"], ["r2"]))
    r2 = act_qdq("r2", 0.03)
    conv(r2, 0.03, "c3", (6, 8, 1, 1))  # no Relu / Q: float output
    conv(r2, 0.03, "c4", (6, 8, 1, 1))
    nodes.append(helper.make_node("Relu", ["c4"], ["r4"]))
    r4 = act_qdq("r4", 0.05)
    nodes.append(helper.make_node("GlobalAveragePool", [r4], ["p"]))
    p = act_qdq("p", 0.02)
    nodes.append(helper.make_node("Flatten", [p], ["f"]))
    g_w = const("g_w", rng.integers(-127, 128, (5, 6)).astype(np.int8))
    g_s = const("g_s", np.array(0.01, np.float32))
    g_z = const("g_z", np.array(0, np.int8))
    nodes.append(helper.make_node("DequantizeLinear", [g_w, g_s, g_z], ["g_wdq"]))
    g_b = const("g_b", rng.integers(-500, 500, 5).astype(np.int32))
    g_bs = const("g_bs", np.array(np.float32(0.02) * np.float32(0.01), np.float32))
    nodes.append(helper.make_node("DequantizeLinear", [g_b, g_bs], ["g_bdq"]))
    nodes.append(helper.make_node("Gemm", ["f", "g_wdq", "g_bdq"], ["g"], transB=1))
    nodes.append(helper.make_node("Sigmoid", ["g"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 13, 10])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5]),
            helper.make_tensor_value_info("c3", TensorProto.FLOAT, ["n", 6, 7, 5]),
            helper.make_tensor_value_info("p_dq", TensorProto.FLOAT, ["n", 6, 1, 1]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    path = _save(model, tmp_path / "qdq.onnx")
    x_in = rng.uniform(-6, 6, (4, 3, 13, 10)).astype(np.float32)
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.x64quantprecision", "1")  # as the tagger does
    want = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(
        None, {"x": x_in}
    )
    have = NumpyNetwork.load(path).run({"x": x_in}, ["y", "c3", "p_dq"])
    np.testing.assert_array_equal(have[2], want[2])  # quantized path: identical
    np.testing.assert_allclose(have[0], want[0], atol=1e-6)
    np.testing.assert_allclose(have[1], want[1], atol=1e-4, rtol=1e-5)


def test_blas_threads_is_thread_local_and_restored() -> None:
    from custom_components.guard_mode.engine import yamnet_numpy  # noqa: PLC0415

    setter = yamnet_numpy._openblas_set_threads_local()
    with yamnet_numpy.blas_threads(1):
        if setter is not None:
            assert setter(1) == 1  # returns the previous (current) value
    if setter is None:
        pytest.skip("no OpenBLAS with openblas_set_num_threads_local here")
    before = setter(2)
    with yamnet_numpy.blas_threads(1):
        pass
    assert setter(before) == 2
