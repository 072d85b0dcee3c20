"""A small reader of the ONNX protobuf wire format (standard library + numpy only).

It reads what Guard Mode's models use: the graph's nodes (op type, name, inputs, outputs and
attributes of type int, ints, float, floats, string and tensor), initializers as numpy arrays
(``raw_data`` or the typed repeated fields; float32, float64, uint8, int8, int16, uint16, int32,
int64, bool), and the graph inputs/outputs with their element types and shapes. Attributes of other
types (graphs, sparse tensors, type protos) are skipped. Tensors stored as external data, sparse
initializers and malformed or truncated data raise :class:`ModelError` naming the file.

The ``onnx`` package is not used on purpose: it has no wheels for Home Assistant OS (musl).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
import struct
from typing import Any

import numpy as np
import numpy.typing as npt


class ModelError(Exception):
    """A model file is missing, unreadable, malformed or not the model that was expected."""


AttributeValue = int | float | str | list[int] | list[float] | npt.NDArray[Any]

# TensorProto.DataType -> little-endian numpy dtype
DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<f4"),  # FLOAT
    2: np.dtype("u1"),  # UINT8
    3: np.dtype("i1"),  # INT8
    4: np.dtype("<u2"),  # UINT16
    5: np.dtype("<i2"),  # INT16
    6: np.dtype("<i4"),  # INT32
    7: np.dtype("<i8"),  # INT64
    9: np.dtype("?"),  # BOOL
    11: np.dtype("<f8"),  # DOUBLE
}
TYPE_NAMES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
}

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_FIELD = tuple[int, int, int | memoryview]


@dataclass(frozen=True, slots=True)
class Node:
    """One graph node."""

    op_type: str
    name: str
    domain: str
    inputs: tuple[str, ...]  # "" marks an omitted optional input
    outputs: tuple[str, ...]
    attributes: dict[str, AttributeValue]


@dataclass(frozen=True, slots=True)
class ValueInfo:
    """A graph input or output: element type (TensorProto.DataType) and shape.

    ``shape`` is None when the rank is unknown; each dimension is an int (dim_value), a str
    (dim_param) or None (neither).
    """

    name: str
    elem_type: int
    shape: tuple[int | str | None, ...] | None

    def describe(self) -> str:
        """Return e.g. ``'patches' float32 [batch,1,96,64]``."""
        dims = (
            "?"
            if self.shape is None
            else ",".join("?" if d is None else str(d) for d in self.shape)
        )
        return f"'{self.name}' {TYPE_NAMES.get(self.elem_type, f'type {self.elem_type}')} [{dims}]"


@dataclass(frozen=True, slots=True)
class Graph:
    """A graph: nodes in file order, initializers by name, inputs and outputs."""

    name: str
    nodes: tuple[Node, ...]
    initializers: dict[str, npt.NDArray[Any]]
    inputs: tuple[ValueInfo, ...]
    outputs: tuple[ValueInfo, ...]


@dataclass(frozen=True, slots=True)
class Model:
    """A model: IR version, producer, opsets by domain, metadata and the main graph."""

    ir_version: int
    producer_name: str
    producer_version: str
    opsets: dict[str, int]
    metadata: dict[str, str]
    graph: Graph
    source: str = field(default="<bytes>")


def load_model(path: Path) -> Model:
    """Read and parse an ONNX file; raise ModelError naming the file on any problem."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelError(f"{path}: cannot read the model file ({err.strerror or err})") from err
    return parse_model(data, str(path))


def parse_model(data: bytes, source: str = "<bytes>") -> Model:
    """Parse a serialised ModelProto; ``source`` names the file in error messages."""
    return _Parser(source).model(memoryview(data))


class _Parser:
    """Decodes the messages of one file; every error names that file."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, what: str) -> ModelError:
        return ModelError(f"{self.source}: not a valid ONNX model ({what})")

    # -- wire format -------------------------------------------------------------------------

    def varint(self, buf: memoryview, pos: int, what: str) -> tuple[int, int]:
        result = shift = 0
        end = len(buf)
        while True:
            if pos >= end:
                raise self.error(f"truncated varint in {what}")
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result, pos
            shift += 7
            if shift >= 70:
                raise self.error(f"varint too long in {what}")

    def fields(self, buf: memoryview, what: str) -> Iterator[_FIELD]:
        """Yield (field number, wire type, value) for each field of one message."""
        pos, end = 0, len(buf)
        while pos < end:
            key, pos = self.varint(buf, pos, what)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise self.error(f"field number 0 in {what}")
            value: int | memoryview
            if wire == _VARINT:
                value, pos = self.varint(buf, pos, what)
            elif wire in (_I64, _I32):
                size = 8 if wire == _I64 else 4
                if pos + size > end:
                    raise self.error(f"truncated fixed-size field in {what}")
                value, pos = buf[pos : pos + size], pos + size
            elif wire == _LEN:
                size, pos = self.varint(buf, pos, what)
                if pos + size > end:
                    raise self.error(f"truncated field {number} in {what}")
                value, pos = buf[pos : pos + size], pos + size
            else:
                raise self.error(f"unsupported wire type {wire} in {what}")
            yield number, wire, value

    def int64(self, wire: int, value: int | memoryview, what: str) -> int:
        if wire != _VARINT or not isinstance(value, int):
            raise self.error(f"wire type {wire} where an integer was expected in {what}")
        return value - (1 << 64) if value >= 1 << 63 else value

    def bytes_(self, wire: int, value: int | memoryview, what: str) -> memoryview:
        if wire != _LEN or not isinstance(value, memoryview):
            raise self.error(
                f"wire type {wire} where a length-delimited field was expected in {what}"
            )
        return value

    def string(self, wire: int, value: int | memoryview, what: str) -> str:
        try:
            return bytes(self.bytes_(wire, value, what)).decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.error(f"invalid UTF-8 string in {what}") from err

    def float32(self, wire: int, value: int | memoryview, what: str) -> float:
        if wire != _I32 or not isinstance(value, memoryview):
            raise self.error(f"wire type {wire} where a float was expected in {what}")
        return float(struct.unpack("<f", value)[0])

    def ints(self, wire: int, value: int | memoryview, what: str) -> list[int]:
        """Decode a repeated int64/int32 field: one value, or a packed run."""
        if wire == _VARINT:
            return [self.int64(wire, value, what)]
        buf = self.bytes_(wire, value, what)
        out, pos = [], 0
        while pos < len(buf):
            raw, pos = self.varint(buf, pos, what)
            out.append(raw - (1 << 64) if raw >= 1 << 63 else raw)
        return out

    def floats(
        self, wire: int, value: int | memoryview, what: str, dtype: str = "<f4"
    ) -> list[float]:
        """Decode a repeated float/double field: one value, or a packed run."""
        size = np.dtype(dtype).itemsize
        if wire not in (_LEN, _I32 if size == 4 else _I64) or not isinstance(value, memoryview):
            raise self.error(f"wire type {wire} where floats were expected in {what}")
        if len(value) % size:
            raise self.error(f"packed floats of odd length in {what}")
        return [float(v) for v in np.frombuffer(value, dtype)]

    # -- messages ----------------------------------------------------------------------------

    def model(self, buf: memoryview) -> Model:
        ir_version, producer, version = 0, "", ""
        opsets: dict[str, int] = {}
        metadata: dict[str, str] = {}
        graph: Graph | None = None
        for number, wire, value in self.fields(buf, "model"):
            if number == 1:
                ir_version = self.int64(wire, value, "model.ir_version")
            elif number == 2:
                producer = self.string(wire, value, "model.producer_name")
            elif number == 3:
                version = self.string(wire, value, "model.producer_version")
            elif number == 7:
                graph = self.graph(self.bytes_(wire, value, "model.graph"))
            elif number == 8:
                domain, opset = self.opset(self.bytes_(wire, value, "model.opset_import"))
                opsets[domain] = opset
            elif number == 14:
                key, text = self.string_pair(self.bytes_(wire, value, "model.metadata_props"))
                metadata[key] = text
        if graph is None:
            raise self.error("no graph")
        if ir_version <= 0:
            raise self.error("no IR version")
        if not opsets:
            raise self.error("no opset_import")
        return Model(ir_version, producer, version, opsets, metadata, graph, self.source)

    def opset(self, buf: memoryview) -> tuple[str, int]:
        domain, version = "", 0
        for number, wire, value in self.fields(buf, "opset_import"):
            if number == 1:
                domain = self.string(wire, value, "opset_import.domain")
            elif number == 2:
                version = self.int64(wire, value, "opset_import.version")
        return domain, version

    def string_pair(self, buf: memoryview) -> tuple[str, str]:
        key = text = ""
        for number, wire, value in self.fields(buf, "metadata_props"):
            if number == 1:
                key = self.string(wire, value, "metadata_props.key")
            elif number == 2:
                text = self.string(wire, value, "metadata_props.value")
        return key, text

    def graph(self, buf: memoryview) -> Graph:
        name = ""
        nodes: list[Node] = []
        initializers: dict[str, npt.NDArray[Any]] = {}
        inputs: list[ValueInfo] = []
        outputs: list[ValueInfo] = []
        for number, wire, value in self.fields(buf, "graph"):
            if number == 1:
                nodes.append(self.node(self.bytes_(wire, value, "graph.node")))
            elif number == 2:
                name = self.string(wire, value, "graph.name")
            elif number == 5:
                tensor_name, array = self.tensor(self.bytes_(wire, value, "graph.initializer"))
                if not tensor_name:
                    raise self.error("initializer without a name")
                initializers[tensor_name] = array
            elif number == 11:
                inputs.append(self.value_info(self.bytes_(wire, value, "graph.input")))
            elif number == 12:
                outputs.append(self.value_info(self.bytes_(wire, value, "graph.output")))
            elif number == 15:
                raise self.error("sparse initializers are not supported")
        # Since IR version 4 initializers may also be listed as graph inputs; they are not inputs.
        real_inputs = tuple(v for v in inputs if v.name not in initializers)
        return Graph(name, tuple(nodes), initializers, real_inputs, tuple(outputs))

    def node(self, buf: memoryview) -> Node:
        inputs: list[str] = []
        outputs: list[str] = []
        name = op_type = domain = ""
        attributes: dict[str, AttributeValue] = {}
        for number, wire, value in self.fields(buf, "node"):
            if number == 1:
                inputs.append(self.string(wire, value, "node.input"))
            elif number == 2:
                outputs.append(self.string(wire, value, "node.output"))
            elif number == 3:
                name = self.string(wire, value, "node.name")
            elif number == 4:
                op_type = self.string(wire, value, "node.op_type")
            elif number == 5:
                attr = self.attribute(self.bytes_(wire, value, "node.attribute"))
                if attr is not None:
                    attributes[attr[0]] = attr[1]
            elif number == 7:
                domain = self.string(wire, value, "node.domain")
        if not op_type:
            raise self.error(f"node {name!r} without an op_type")
        return Node(op_type, name, domain, tuple(inputs), tuple(outputs), attributes)

    def attribute(self, buf: memoryview) -> tuple[str, AttributeValue] | None:
        """Decode an attribute; None for types this reader skips (graphs, sparse tensors...)."""
        name = ""
        kind = 0
        scalars: dict[int, AttributeValue] = {}
        ints: list[int] = []
        floats: list[float] = []
        for number, wire, value in self.fields(buf, "attribute"):
            what = f"attribute {name or '?'}"
            if number == 1:
                name = self.string(wire, value, "attribute.name")
            elif number == 20:
                kind = self.int64(wire, value, what)
            elif number == 2:
                scalars[1] = self.float32(wire, value, what)
            elif number == 3:
                scalars[2] = self.int64(wire, value, what)
            elif number == 4:
                scalars[3] = self.string(wire, value, what)
            elif number == 5:
                scalars[4] = self.tensor(self.bytes_(wire, value, what))[1]
            elif number == 7:
                floats += self.floats(wire, value, what)
            elif number == 8:
                ints += self.ints(wire, value, what)
        if not name:
            raise self.error("attribute without a name")
        if kind == 0:  # very old files: infer the type from the field that is set
            kind = next(iter(scalars), 7 if ints else 6 if floats else 0)
        if kind in scalars:
            return name, scalars[kind]
        if kind == 6:
            return name, floats
        if kind == 7:
            return name, ints
        if kind in (1, 2, 3, 4):
            raise self.error(f"attribute {name} has no value")
        return None

    def tensor(self, buf: memoryview) -> tuple[str, npt.NDArray[Any]]:
        dims: list[int] = []
        data_type = 0
        name = ""
        raw: memoryview | None = None
        typed_ints: list[int] = []
        typed_floats: list[float] = []
        for number, wire, value in self.fields(buf, "tensor"):
            what = f"tensor {name or '?'}"
            if number == 1:
                dims += self.ints(wire, value, what)
            elif number == 2:
                data_type = self.int64(wire, value, what)
            elif number == 8:
                name = self.string(wire, value, "tensor.name")
            elif number == 9:
                raw = self.bytes_(wire, value, what)
            elif number in (5, 7):  # int32_data, int64_data
                typed_ints += self.ints(wire, value, what)
            elif number == 4:
                typed_floats += self.floats(wire, value, what)
            elif number == 10:
                typed_floats += self.floats(wire, value, what, "<f8")
            elif number == 3:
                raise self.error(f"tensor {name or '?'}: segmented tensors are not supported")
            elif number == 13 or (number == 14 and self.int64(wire, value, what) == 1):
                raise self.error(f"tensor {name or '?'}: external data is not supported")
        what = f"tensor {name or '?'}"
        dtype = DTYPES.get(data_type)
        if dtype is None:
            kind = TYPE_NAMES.get(data_type, str(data_type))
            raise self.error(f"{what}: unsupported data type {kind}")
        if any(d < 0 for d in dims):
            raise self.error(f"{what}: negative dimension {dims}")
        count = int(np.prod(dims, dtype=np.int64))
        if raw is not None:
            if len(raw) != count * dtype.itemsize:
                raise self.error(f"{what}: {len(raw)} bytes of data for shape {dims} of {dtype}")
            array = np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="))
        else:
            values: list[int] | list[float] = typed_floats if dtype.kind == "f" else typed_ints
            if len(values) != count:
                raise self.error(f"{what}: {len(values)} values for shape {dims}")
            try:
                array = np.array(values, dtype.newbyteorder("="))
            except OverflowError as err:
                raise self.error(f"{what}: value out of range for {dtype}") from err
        return name, array.reshape(dims)

    def value_info(self, buf: memoryview) -> ValueInfo:
        name = ""
        elem_type = 0
        shape: tuple[int | str | None, ...] | None = None
        for number, wire, value in self.fields(buf, "value_info"):
            if number == 1:
                name = self.string(wire, value, "value_info.name")
            elif number == 2:
                elem_type, shape = self.type_proto(self.bytes_(wire, value, "value_info.type"))
        return ValueInfo(name, elem_type, shape)

    def type_proto(self, buf: memoryview) -> tuple[int, tuple[int | str | None, ...] | None]:
        for number, wire, value in self.fields(buf, "type"):
            if number == 1:  # tensor_type
                return self.tensor_type(self.bytes_(wire, value, "type.tensor_type"))
        return 0, None

    def tensor_type(self, buf: memoryview) -> tuple[int, tuple[int | str | None, ...] | None]:
        elem_type = 0
        shape: tuple[int | str | None, ...] | None = None
        for number, wire, value in self.fields(buf, "tensor_type"):
            if number == 1:
                elem_type = self.int64(wire, value, "tensor_type.elem_type")
            elif number == 2:
                dims: list[int | str | None] = []
                for dnum, dwire, dvalue in self.fields(
                    self.bytes_(wire, value, "tensor_type.shape"), "shape"
                ):
                    if dnum == 1:
                        dims.append(self.dimension(self.bytes_(dwire, dvalue, "shape.dim")))
                shape = tuple(dims)
        return elem_type, shape

    def dimension(self, buf: memoryview) -> int | str | None:
        dim: int | str | None = None
        for number, wire, value in self.fields(buf, "dimension"):
            if number == 1:
                dim = self.int64(wire, value, "dim_value")
            elif number == 2:
                dim = self.string(wire, value, "dim_param")
        return dim
