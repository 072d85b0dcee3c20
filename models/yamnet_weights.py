"""Export the numpy backend's weights (``engine/data/yamnet.npz``) from the built ONNX model.

Used by ``build_yamnet.py``. The graph must be exactly YAMNet's fixed layout as
``engine/yamnet_numpy.py`` runs it (checked node by node: operators, strides, pads, zero points,
int32 bias scales); anything else is a :class:`ValueError`. Exported per convolution: the int8
weights as the model stores them, the int32 bias, and onnxruntime's requantization multiplier
``float32(float32(x_scale * w_scale) / y_scale)``; for the pooling its multiplier
``float32(x_scale / float32(y_scale * H * W))``; for the classifier its int8 weights, int32 bias
and ``float32(x_scale * w_scale)``. The file is a plain .npz (uncompressed, fixed timestamps,
sorted names): byte-for-byte reproducible.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType
from typing import Any
import zipfile

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
RUNTIME = REPO / "custom_components" / "guard_mode" / "engine" / "yamnet_numpy.py"
EXACT_FLOAT32 = 2**24  # integers up to this magnitude are exact in float32
Array = npt.NDArray[Any]


def runtime_module() -> ModuleType:
    """Import engine/yamnet_numpy.py by path (the integration package needs Home Assistant)."""
    spec = importlib.util.spec_from_file_location("yamnet_numpy", RUNTIME)
    if spec is None or spec.loader is None:
        raise ImportError(RUNTIME)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.users: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.users.setdefault(name, []).append(node)
        self.nodes = list(graph.node)

    def made_by(self, name: str, op: str) -> onnx.NodeProto:
        node = self.producer.get(name)
        if node is None or node.op_type != op:
            raise ValueError(f"{name}: expected the output of a {op}")
        return node  # type: ignore[no-any-return]

    def only_user(self, name: str, op: str) -> onnx.NodeProto:
        users = self.users.get(name, [])
        if len(users) != 1 or users[0].op_type != op:
            raise ValueError(f"{name}: expected to feed one {op}")
        return users[0]

    def activation_quant(self, dequantized: str) -> tuple[np.float32, int]:
        """(scale, zero point) of a runtime tensor: DequantizeLinear(QuantizeLinear(x)) alike."""
        dq = self.made_by(dequantized, "DequantizeLinear")
        q = self.made_by(dq.input[0], "QuantizeLinear")
        if list(q.input[1:]) != list(dq.input[1:]) and not all(
            np.array_equal(self.init[a], self.init[b])
            for a, b in zip(q.input[1:], dq.input[1:], strict=True)
        ):
            raise ValueError(f"{dequantized}: QuantizeLinear and DequantizeLinear differ")
        scale, zero_point = self.init[dq.input[1]], self.init[dq.input[2]]
        if scale.size != 1 or zero_point.dtype != np.uint8:
            raise ValueError(f"{dequantized}: expected a per-tensor uint8 quantization")
        return np.float32(scale.reshape(())), int(zero_point.reshape(()))

    def constant(self, dequantized: str, dtype: type) -> tuple[Array, Array]:
        """(values, scale) of DequantizeLinear(constant) with zero points 0."""
        dq = self.made_by(dequantized, "DequantizeLinear")
        values, scale = self.init[dq.input[0]], self.init[dq.input[1]].astype(np.float32)
        if values.dtype != dtype or np.any(self.init[dq.input[2]] != 0):
            raise ValueError(f"{dequantized}: expected {dtype.__name__} values, zero point 0")
        return values, scale

    def requantized_output(self, conv: onnx.NodeProto) -> tuple[str, np.float32]:
        """Conv -> Relu -> QuantizeLinear -> DequantizeLinear: (its output, y_scale)."""
        relu = self.only_user(conv.output[0], "Relu")
        q = self.only_user(relu.output[0], "QuantizeLinear")
        dq = self.only_user(q.output[0], "DequantizeLinear")
        scale, zero_point = self.activation_quant(dq.output[0])
        if zero_point:
            raise ValueError(f"{conv.name}: a ReLU output with zero point {zero_point}")
        return dq.output[0], scale


def export(model: onnx.ModelProto) -> dict[str, Array]:
    """Return the weights of the numpy backend, by name, from the built model."""
    runtime = runtime_module()
    graph = _Graph(model)
    convs = [node for node in graph.nodes if node.op_type == "Conv"]
    names = runtime.conv_names()
    strides = [2, *(s for stride in runtime.DEPTHWISE_STRIDES for s in (stride, 1))]
    if len(convs) != len(names):
        raise ValueError(f"expected {len(names)} convolutions, found {len(convs)}")
    out: dict[str, Array] = {}
    x_name = convs[0].input[0]
    x_scale, zero_point = graph.activation_quant(x_name)
    out["input_scale"] = np.array(x_scale, np.float32)
    out["input_zero_point"] = np.array(zero_point, np.uint8)
    reach = max(zero_point, 255 - zero_point)  # largest |q - zero point| of the input
    for conv, name, stride in zip(convs, names, strides, strict=True):
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        weight, w_scale = graph.constant(conv.input[1], np.int8)
        pointwise = name.startswith("pw")
        want = {
            "kernel_shape": [1, 1] if pointwise else [3, 3],
            "strides": [stride, stride],
            "pads": [0, 0, 0, 0] if pointwise else [1, 1, 1, 1] if stride == 1 else [0, 0, 1, 1],
            "group": weight.shape[0] if name.startswith("dw") else 1,
            "dilations": [1, 1],
        }
        have = {key: attrs.get(key, [1, 1] if key == "dilations" else None) for key in want}
        if conv.input[0] != x_name or have != want:
            raise ValueError(f"{conv.name}: expected {want} on {x_name}, found {have}")
        acc_scale = (x_scale * w_scale).astype(np.float32)
        bias, bias_scale = graph.constant(conv.input[2], np.int32)
        if not np.array_equal(bias_scale, acc_scale):
            raise ValueError(f"{conv.name}: bias scale is not x_scale * w_scale")
        worst = np.abs(weight.astype(np.int64)).reshape(len(weight), -1).sum(1) * reach
        if (worst + np.abs(bias)).max() >= EXACT_FLOAT32:
            raise ValueError(f"{conv.name}: sums may not be exact in float32")
        x_name, y_scale = graph.requantized_output(conv)
        out[f"{name}_weight"] = weight
        out[f"{name}_bias"] = bias
        out[f"{name}_multiplier"] = (acc_scale / y_scale).astype(np.float32)
        x_scale, reach = y_scale, 255

    pool = graph.only_user(x_name, "GlobalAveragePool")
    pooled = graph.only_user(graph.only_user(pool.output[0], "QuantizeLinear").output[0],
                             "DequantizeLinear").output[0]  # fmt: skip
    pool_scale, _ = graph.activation_quant(pooled)
    size = np.float32(3 * 2)  # 96 x 64 after four stride-2 layers and the first one: 3 x 2
    out["pool_multiplier"] = np.array(np.float32(x_scale / np.float32(pool_scale * size)))
    flat = graph.only_user(pooled, "Flatten")
    embedding = graph.only_user(graph.only_user(flat.output[0], "QuantizeLinear").output[0],
                                "DequantizeLinear").output[0]  # fmt: skip
    if graph.activation_quant(embedding) != (pool_scale, 0):
        raise ValueError("the flattened embedding is quantized differently from the pooling")
    out["embedding_scale"] = np.array(pool_scale, np.float32)
    gemm = next(node for node in graph.users[embedding] if node.op_type == "Gemm")
    attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
    if attrs.get("transB") != 1 or attrs.get("alpha", 1.0) != 1 or attrs.get("beta", 1.0) != 1:
        raise ValueError(f"{gemm.name}: expected Gemm(transB=1, alpha=beta=1)")
    weight, w_scale = graph.constant(gemm.input[1], np.int8)
    scale = (pool_scale * np.broadcast_to(w_scale, (len(weight),))).astype(np.float32)
    bias, bias_scale = graph.constant(gemm.input[2], np.int32)
    if not np.array_equal(np.broadcast_to(bias_scale, scale.shape), scale):
        raise ValueError(f"{gemm.name}: bias scale is not x_scale * w_scale")
    if (np.abs(weight.astype(np.int64)).sum(1) * 255 + np.abs(bias)).max() >= EXACT_FLOAT32:
        raise ValueError(f"{gemm.name}: sums may not be exact in float32")
    out["classifier_weight"] = weight
    out["classifier_bias"] = bias
    out["classifier_scale"] = scale
    return out


def npz_bytes(arrays: dict[str, Array]) -> bytes:
    """Serialise arrays as an .npz that np.load reads, the same bytes every time."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            data = io.BytesIO()
            np.lib.format.write_array(  # type: ignore[no-untyped-call]
                data, np.ascontiguousarray(arrays[name]), allow_pickle=False
            )
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data.getvalue())
    return buffer.getvalue()
