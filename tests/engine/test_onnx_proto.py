"""The pure-Python ONNX reader: the shipped model read exactly, encodings, and malformed files."""

from __future__ import annotations

from pathlib import Path
import struct

import numpy as np
import pytest

from custom_components.guard_mode.engine import onnx_proto
from custom_components.guard_mode.engine.onnx_proto import ModelError, load_model, parse_model
from custom_components.guard_mode.engine.tagger import DEFAULT_MODEL

# -- a tiny protobuf encoder, so malformed messages can be made precisely ----------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: ten-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def vint(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def ld(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return key(number, 2) + varint(len(data)) + data


def f32(number: int, value: float) -> bytes:
    return key(number, 5) + struct.pack("<f", value)


def model(graph: bytes, *, opset: bool = True) -> bytes:
    out = vint(1, 10) + ld(2, "test") + ld(7, graph)
    return out + (ld(8, ld(1, "") + vint(2, 20)) if opset else b"")


def tensor(name: str, data_type: int, dims: list[int], *fields: bytes) -> bytes:
    return b"".join(vint(1, d) for d in dims) + vint(2, data_type) + ld(8, name) + b"".join(fields)


def graph_with(*initializers: bytes, nodes: bytes = b"") -> bytes:
    return nodes + ld(2, "g") + b"".join(ld(5, t) for t in initializers)


def value_info(name: str, elem_type: int, dims: list[int | str]) -> bytes:
    shape = b"".join(
        ld(1, ld(2, d) if isinstance(d, str) else vint(1, d)) for d in dims
    )  # TensorShapeProto.dim
    return ld(1, name) + ld(2, ld(1, vint(1, elem_type) + ld(2, shape)))


def parse(data: bytes) -> onnx_proto.Model:
    return parse_model(data, "test.onnx")


# -- the shipped model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> onnx_proto.Model:
    return load_model(DEFAULT_MODEL)


def test_shipped_model_structure(shipped: onnx_proto.Model) -> None:
    graph = shipped.graph
    assert shipped.ir_version == 10
    assert shipped.opsets == {"": 20}
    assert shipped.producer_name == "guard_mode.models.build_yamnet"
    assert shipped.metadata["license"].startswith("Apache-2.0")
    assert [v.describe() for v in graph.inputs] == ["'patches' float32 [batch,1,96,64]"]
    assert [v.describe() for v in graph.outputs] == [
        "'scores' float32 [batch,521]",
        "'embedding' float32 [batch,1024]",
    ]
    ops = {node.op_type for node in graph.nodes}
    assert ops == {
        "QuantizeLinear",
        "DequantizeLinear",
        "Conv",
        "Relu",
        "GlobalAveragePool",
        "Flatten",
        "Gemm",
        "Sigmoid",
        "Identity",
    }
    assert sum(node.op_type == "Conv" for node in graph.nodes) == 27
    first_conv = next(node for node in graph.nodes if node.op_type == "Conv")
    assert first_conv.attributes["strides"] == [2, 2]
    assert first_conv.attributes["pads"] == [0, 0, 1, 1]
    weights = graph.initializers[first_conv.inputs[1].removesuffix("_qdq") + "_q"]
    assert weights.dtype == np.int8
    assert weights.shape == (32, 1, 3, 3)
    dtypes = {array.dtype for array in graph.initializers.values()}
    assert dtypes <= {np.dtype(t) for t in ("int8", "uint8", "int32", "float32")}


def test_shipped_model_matches_the_onnx_package(shipped: onnx_proto.Model) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper  # noqa: PLC0415

    reference = onnx.load(str(DEFAULT_MODEL))
    assert len(shipped.graph.nodes) == len(reference.graph.node)
    for ours, theirs in zip(shipped.graph.nodes, reference.graph.node, strict=True):
        assert (ours.op_type, ours.name, ours.domain) == (theirs.op_type, theirs.name, "")
        assert ours.inputs == tuple(theirs.input)
        assert ours.outputs == tuple(theirs.output)
        for attr in theirs.attribute:
            value = helper.get_attribute_value(attr)
            assert ours.attributes[attr.name] == (list(value) if isinstance(value, list) else value)
    assert set(shipped.graph.initializers) == {t.name for t in reference.graph.initializer}
    for init in reference.graph.initializer:
        want = numpy_helper.to_array(init)
        have = shipped.graph.initializers[init.name]
        assert have.dtype == want.dtype
        np.testing.assert_array_equal(have, want)


# -- encodings -----------------------------------------------------------------------------------


def test_typed_fields_packed_and_unpacked() -> None:
    floats = np.array([1.5, -2.25, 3.0], np.float32)
    packed_floats = ld(4, floats.tobytes())
    unpacked_int8 = b"".join(vint(5, v) for v in (-128, -1, 0, 127))  # int32_data, one by one
    packed_uint8 = ld(5, b"".join(varint(v) for v in (0, 200, 255)))
    int64s = ld(7, b"".join(varint(v) for v in (-(2**40), 7)))
    int32_raw = ld(9, np.array([-5, 2**31 - 1], "<i4").tobytes())
    graph = graph_with(
        tensor("f", 1, [3], packed_floats),
        tensor("i8", 3, [2, 2], unpacked_int8),
        tensor("u8", 2, [3], packed_uint8),
        tensor("i64", 7, [2], int64s),
        tensor("i32", 6, [2], int32_raw),
        tensor("scalar", 1, [], f32(4, 0.5)),
    )
    inits = parse(model(graph)).graph.initializers
    np.testing.assert_array_equal(inits["f"], floats)
    assert inits["i8"].dtype == np.int8
    np.testing.assert_array_equal(inits["i8"], [[-128, -1], [0, 127]])
    assert inits["u8"].dtype == np.uint8
    np.testing.assert_array_equal(inits["u8"], [0, 200, 255])
    np.testing.assert_array_equal(inits["i64"], [-(2**40), 7])
    np.testing.assert_array_equal(inits["i32"], [-5, 2**31 - 1])
    assert inits["scalar"].shape == ()
    assert float(inits["scalar"]) == 0.5


def test_nodes_attributes_and_value_infos() -> None:
    attrs = [
        ld(1, "i") + vint(20, 2) + vint(3, -3),
        ld(1, "f") + vint(20, 1) + f32(2, 0.25),
        ld(1, "s") + vint(20, 3) + ld(4, "SAME_UPPER"),
        ld(1, "ints") + vint(20, 7) + vint(8, 1) + vint(8, -2),
        ld(1, "packed") + vint(20, 7) + ld(8, varint(4) + varint(5)),
        ld(1, "floats") + vint(20, 6) + ld(7, np.array([0.5, 2], "<f4").tobytes()),
        ld(1, "t") + vint(20, 4) + ld(5, tensor("", 6, [1], vint(5, 9))),
        ld(1, "g") + vint(20, 5) + ld(6, b""),  # graph attribute: skipped
    ]
    node = ld(1, "x") + ld(1, "") + ld(2, "y") + ld(3, "n0") + ld(4, "Op") + ld(7, "dom")
    node += b"".join(ld(5, a) for a in attrs)
    graph = ld(1, node) + ld(11, value_info("x", 1, ["batch", 3])) + ld(12, value_info("y", 7, [2]))
    parsed = parse(model(graph)).graph
    (only,) = parsed.nodes
    assert (only.op_type, only.name, only.domain) == ("Op", "n0", "dom")
    assert only.inputs == ("x", "")
    assert only.outputs == ("y",)
    assert only.attributes["i"] == -3
    assert only.attributes["f"] == 0.25
    assert only.attributes["s"] == "SAME_UPPER"
    assert only.attributes["ints"] == [1, -2]
    assert only.attributes["packed"] == [4, 5]
    assert only.attributes["floats"] == [0.5, 2.0]
    np.testing.assert_array_equal(only.attributes["t"], [9])
    assert "g" not in only.attributes
    assert parsed.inputs[0].shape == ("batch", 3)
    assert parsed.outputs[0].describe() == "'y' int64 [2]"


def test_initializers_listed_as_inputs_are_not_inputs() -> None:
    graph = graph_with(tensor("w", 1, [1], f32(4, 1.0))) + ld(11, value_info("w", 1, [1]))
    graph += ld(11, value_info("x", 1, [1]))
    assert [v.name for v in parse(model(graph)).graph.inputs] == ["x"]


def test_unknown_fields_are_skipped() -> None:
    extra = vint(99, 5) + ld(98, b"anything") + key(97, 1) + b"\0" * 8
    parsed = parse(model(graph_with(tensor("w", 1, [1], f32(4, 1.0))) + extra) + extra)
    assert list(parsed.graph.initializers) == ["w"]


# -- malformed input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no graph"),
        (model(graph_with(), opset=False), "no opset_import"),
        (b"\x08", "truncated varint"),
        (b"\x08" + b"\xff" * 11, "varint too long"),
        (b"\x0b", "unsupported wire type"),
        (b"\x00\x01", "field number 0"),
        (ld(7, b"")[:-1] + b"\x05", "truncated field 7"),
        (key(7, 5) + b"\x00", "truncated fixed-size field"),
        (vint(7, 1), "wire type 0"),
        (model(graph_with(tensor("t", 1, [2], f32(4, 1.0)))), "1 values for shape [2]"),
        (model(graph_with(tensor("t", 1, [2], ld(9, b"\0\0\0")))), "3 bytes of data"),
        (model(graph_with(tensor("t", 8, [1]))), "unsupported data type string"),
        (model(graph_with(tensor("t", 1, [1], vint(14, 1)))), "external data"),
        (model(graph_with(tensor("", 1, [1], f32(4, 1.0)))), "initializer without a name"),
        (model(ld(15, b"")), "sparse initializers"),
        (model(ld(1, ld(3, "n"))), "without an op_type"),
        (model(ld(1, ld(4, "Op") + ld(5, vint(20, 2)))), "attribute without a name"),
        (model(ld(1, ld(4, "Op") + ld(5, ld(1, "a") + vint(20, 2)))), "has no value"),
        (model(graph_with(tensor("t", 1, [1], ld(4, b"\0\0\0")))), "odd length"),
        (ld(2, b"\xff\xfe"), "invalid UTF-8"),
    ],
)
def test_malformed_data_raises_model_error(data: bytes, message: str) -> None:
    with pytest.raises(ModelError, match=r"test\.onnx") as info:
        parse(data)
    assert message in str(info.value)


@pytest.mark.parametrize("fraction", [0.001, 0.25, 0.5, 0.9, 0.9999])
def test_truncated_model_file(tmp_path: Path, fraction: float) -> None:
    data = DEFAULT_MODEL.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelError, match=r"cut\.onnx"):
        load_model(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nothing\.onnx: cannot read"):
        load_model(tmp_path / "nothing.onnx")


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(ModelError, match=r"garbage\.onnx"):
        load_model(path)
