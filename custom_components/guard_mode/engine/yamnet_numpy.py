"""Pure-numpy backend: runs the tagger's ONNX file by interpreting its node list.

The weights are read from the same ``yamnet.onnx`` as onnxruntime uses (through
:mod:`.onnx_proto`), and the int8 quantization is emulated the way onnxruntime executes a QDQ
graph: each ``DequantizeLinear → Conv → [Relu] → QuantizeLinear`` chain becomes one integer
convolution (exact int32 accumulation, here in float32 or, where float32 could not hold every sum
exactly, float64) followed by onnxruntime's requantization ``clip(rint(acc * (x_scale * w_scale /
y_scale)) + zero_point)``; ``DequantizeLinear → GlobalAveragePool → QuantizeLinear`` and
``DequantizeLinear → Gemm`` likewise. Anything else runs in float32 as the ONNX operator defines
it. Activations are kept as NHWC arrays of (q - zero_point) so that 1x1 convolutions are single
BLAS matrix products, a depthwise convolution is one einsum over a strided view of its padded
input (all taps at once), and the first convolution is an im2col product, for a whole batch.

Supported operators: QuantizeLinear, DequantizeLinear, Conv (dense or depthwise), Relu,
GlobalAveragePool, Reshape, Flatten, Gemm, Sigmoid, Identity. Any other operator, an unsupported
attribute or a structure this interpreter can't run raises :class:`ModelError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
import ctypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
import numpy.typing as npt

from .onnx_proto import Graph, ModelError, Node, ValueInfo, load_model

Array = npt.NDArray[Any]
Floats = npt.NDArray[np.float32]

SUPPORTED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "Conv",
        "Relu",
        "GlobalAveragePool",
        "Reshape",
        "Flatten",
        "Gemm",
        "Sigmoid",
        "Identity",
    }
)
_EXACT_FLOAT32 = 2**24  # integers up to this magnitude are exact in float32
_QRANGE = {np.dtype("uint8"): (0, 255), np.dtype("int8"): (-128, 127)}


# -- symbolic values seen while compiling ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Quant:
    """Per-tensor quantization of a runtime tensor, held as (q - zero_point)."""

    scale: np.float32
    zero_point: int
    low: int  # qmin - zero_point
    high: int  # qmax - zero_point


@dataclass(frozen=True, slots=True)
class _Const:
    """A constant (initializer or folded)."""

    value: Array


@dataclass(frozen=True, slots=True)
class _QConst:
    """DequantizeLinear of an integer constant: centered integers, scale along ``axis``."""

    centered: Array  # (q - zero_point) as int32 (8-bit data) or int64
    scale: Floats  # shape () or [size of axis]
    axis: int

    def dequantized(self) -> Floats:
        """Return the float value DequantizeLinear gives."""
        shape = [1] * self.centered.ndim
        if self.scale.ndim:
            shape[self.axis] = -1
        return (self.centered.astype(np.float32) * self.scale.reshape(shape)).astype(np.float32)


@dataclass(frozen=True, slots=True)
class _Act:
    """A runtime tensor in register ``slot``: float32, or centered integers when ``quant``."""

    slot: int
    quant: _Quant | None
    nhwc: bool  # a 4-D ONNX (NCHW) tensor held as NHWC


@dataclass(frozen=True, slots=True)
class _Deq:
    """DequantizeLinear of a runtime quantized tensor (materialized only when needed)."""

    act: _Act


_Sym = _Const | _QConst | _Act | _Deq


@dataclass(frozen=True, slots=True)
class _Step:
    fn: Callable[..., Array]
    inputs: tuple[int, ...]
    output: int
    node: str


def _quant_range(zero_point: Array) -> tuple[int, int]:
    if zero_point.dtype not in _QRANGE:
        raise TypeError(zero_point.dtype)
    return _QRANGE[zero_point.dtype]


@cache
def _openblas_set_threads_local() -> Callable[[int], int] | None:
    """Find ``openblas_set_num_threads_local`` in the OpenBLAS numpy has loaded, if any."""
    numpy_dir = Path(np.__file__).parent
    candidates = [
        *_loaded_libraries("openblas"),  # Linux: whatever numpy really loaded (bundled or system)
        *sorted((numpy_dir.parent / "numpy.libs").glob("*openblas*")),
        *sorted((numpy_dir / ".dylibs").glob("*openblas*")),
    ]
    for candidate in candidates:
        try:
            function = ctypes.CDLL(str(candidate)).openblas_set_num_threads_local
        except OSError, AttributeError:
            continue
        function.argtypes = [ctypes.c_int]
        function.restype = ctypes.c_int
        return function
    return None


def _loaded_libraries(fragment: str) -> list[Path]:
    """Return the shared libraries mapped into this process whose file name contains fragment."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    paths = {
        Path(parts[5]) for parts in (line.split(maxsplit=5) for line in lines) if len(parts) == 6
    }
    return sorted(path for path in paths if fragment in path.name and ".so" in path.name)


@contextmanager
def blas_threads(count: int) -> Iterator[None]:
    """Limit OpenBLAS to count threads for BLAS calls made by this thread, inside the block.

    numpy's OpenBLAS otherwise runs matrix products on every core (and its idle workers spin),
    which costs CPU time for no gain at this model's sizes. Thread-local and best effort: without
    OpenBLAS >= 0.3.27 (or with another BLAS) this does nothing.
    """
    setter = _openblas_set_threads_local()
    if setter is None:
        yield
        return
    previous = setter(max(1, count))
    try:
        yield
    finally:
        setter(previous)


class NumpyNetwork:
    """An ONNX graph compiled into numpy steps; :meth:`run` evaluates requested outputs."""

    def __init__(self, graph: Graph, source: str) -> None:
        """Compile graph (from file ``source``); raise ModelError if it can't be run here."""
        self.source = source
        self.inputs: tuple[ValueInfo, ...] = graph.inputs
        self.outputs: tuple[ValueInfo, ...] = graph.outputs
        compiler = _Compiler(graph, source)
        self._steps = compiler.steps
        self._input_slots = compiler.input_slots
        self._output_slots = compiler.output_slots
        self._slots = compiler.slot_count
        self._plans: dict[tuple[str, ...], list[_Step]] = {}

    @classmethod
    def load(cls, path: Path) -> NumpyNetwork:
        """Read and compile an ONNX file."""
        model = load_model(path)
        return cls(model.graph, str(path))

    def run(self, feeds: Mapping[str, Array], outputs: Sequence[str]) -> list[Floats]:
        """Evaluate outputs (graph output names) from feeds (graph input name -> array)."""
        key = tuple(outputs)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(key)
        regs: list[Any] = [None] * self._slots
        for name, slot in self._input_slots.items():
            if name not in feeds:
                raise ValueError(f"missing input {name!r}")
            regs[slot] = np.asarray(feeds[name], np.float32)
        for step in plan:
            regs[step.output] = step.fn(*[regs[i] for i in step.inputs])
        return [regs[self._output_slots[name]] for name in outputs]

    def _plan(self, outputs: tuple[str, ...]) -> list[_Step]:
        """Return the steps needed for outputs, in order."""
        for name in outputs:
            if name not in self._output_slots:
                raise ValueError(f"{self.source}: no output {name!r}")
        needed = {self._output_slots[name] for name in outputs}
        plan: list[_Step] = []
        for step in reversed(self._steps):
            if step.output in needed:
                plan.append(step)
                needed.update(step.inputs)
        return plan[::-1]


# -- the compiler ------------------------------------------------------------------------------


class _Compiler:
    """Turns the node list into steps, fusing quantized chains the way onnxruntime does."""

    def __init__(self, graph: Graph, source: str) -> None:
        self.source = source
        self.steps: list[_Step] = []
        self.slot_count = 0
        self.syms: dict[str, _Sym] = {k: _Const(v) for k, v in graph.initializers.items()}
        self.input_slots: dict[str, int] = {}
        self.output_slots: dict[str, int] = {}
        self.graph_outputs = {o.name for o in graph.outputs}
        self.consumers: dict[str, list[int]] = {}
        for index, node in enumerate(graph.nodes):
            for name in node.inputs:
                self.consumers.setdefault(name, []).append(index)
        self.nodes = graph.nodes
        self.skip: set[int] = set()

        for info in graph.inputs:
            self.add_input(info)
        for index, node in enumerate(graph.nodes):
            if index in self.skip:
                continue
            if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
                raise self.error(node, f"operator {node.domain or 'ai.onnx'}.{node.op_type}")
            try:
                getattr(self, f"op_{node.op_type}")(index, node)
            except (KeyError, TypeError, ValueError, IndexError) as err:
                raise self.error(node, f"inputs or attributes ({err!r})") from err
        for info in graph.outputs:
            self.add_output(info)

    # -- helpers -------------------------------------------------------------------------------

    def error(self, node: Node, what: str) -> ModelError:
        label = node.name or (node.outputs[0] if node.outputs else "?")
        return ModelError(
            f"{self.source}: the numpy backend does not support {what} (node {label!r})"
        )

    def new_slot(self) -> int:
        self.slot_count += 1
        return self.slot_count - 1

    def emit(self, fn: Callable[..., Array], inputs: Sequence[int], node: str) -> int:
        out = self.new_slot()
        self.steps.append(_Step(fn, tuple(inputs), out, node))
        return out

    def sym(self, name: str) -> _Sym:
        if name not in self.syms:
            raise KeyError(f"unknown tensor {name!r}")
        return self.syms[name]

    def const(self, name: str) -> Array:
        sym = self.sym(name)
        if not isinstance(sym, _Const):
            raise TypeError(f"{name!r} must be a constant")
        return sym.value

    def optional(self, node: Node, index: int) -> str | None:
        return node.inputs[index] if len(node.inputs) > index and node.inputs[index] else None

    def only_consumer(self, name: str) -> tuple[int, Node] | None:
        """Return the one node reading name, if exactly one does and name is no graph output."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or name in self.graph_outputs:
            return None
        return users[0], self.nodes[users[0]]

    def float_act(self, sym: _Sym, node: Node) -> _Act:
        """Return a runtime float tensor for sym, dequantizing it when needed."""
        if isinstance(sym, _Act) and sym.quant is None:
            return sym
        if isinstance(sym, _Deq):
            scale = sym.act.quant.scale if sym.act.quant else np.float32(1)
            slot = self.emit(lambda x: x * scale, [sym.act.slot], node.name)
            return _Act(slot, None, sym.act.nhwc)
        raise TypeError("a runtime float tensor was expected")

    def runtime_quant(self, node: Node, scale_name: str, zp_name: str | None) -> _Quant:
        """Per-tensor quantization parameters of a QuantizeLinear/DequantizeLinear node."""
        scale = self.const(scale_name)
        zero_point = self.const(zp_name) if zp_name else np.zeros((), np.uint8)
        if scale.size != 1 or zero_point.size != 1:
            raise self.error(node, "per-axis quantization of a runtime tensor")
        if _int_attr(node, "block_size", 0):
            raise self.error(node, "blocked quantization")
        qmin, qmax = _quant_range(zero_point)
        zp = int(zero_point.reshape(()))
        return _Quant(np.float32(scale.reshape(())), zp, qmin - zp, qmax - zp)

    def requant_target(self, out: str, allow_relu: bool) -> tuple[bool, _Quant, Node] | None:
        """If out feeds only [Relu →] QuantizeLinear, claim those nodes and return them."""
        claimed: list[int] = []
        relu = False
        found = self.only_consumer(out)
        if found is not None and allow_relu and found[1].op_type == "Relu":
            if found[1].inputs[0] != out:
                return None
            relu = True
            claimed.append(found[0])
            out = found[1].outputs[0]
            found = self.only_consumer(out)
        if found is None or found[1].op_type != "QuantizeLinear" or found[1].inputs[0] != out:
            return None
        index, node = found
        try:
            quant = self.runtime_quant(node, node.inputs[1], self.optional(node, 2))
        except KeyError, TypeError, ModelError:
            return None
        self.skip.update([*claimed, index])
        return relu, quant, node

    # -- graph inputs and outputs --------------------------------------------------------------

    def add_input(self, info: ValueInfo) -> None:
        if info.elem_type != 1:
            raise ModelError(f"{self.source}: the numpy backend needs float32 inputs, found "
                             f"{info.describe()}")  # fmt: skip
        slot = self.new_slot()
        self.input_slots[info.name] = slot
        if info.shape is not None and len(info.shape) == 4:
            out = self.emit(lambda x: x.transpose(0, 2, 3, 1), [slot], info.name)
            self.syms[info.name] = _Act(out, None, True)
        else:
            self.syms[info.name] = _Act(slot, None, False)

    def add_output(self, info: ValueInfo) -> None:
        sym = self.syms.get(info.name)
        if sym is None or isinstance(sym, _Const | _QConst):
            raise ModelError(f"{self.source}: graph output {info.name!r} is not computed")
        if isinstance(sym, _Act) and sym.quant is not None:
            raise ModelError(f"{self.source}: graph output {info.name!r} is quantized")
        fake = Node("Output", info.name, "", (), (info.name,), {})
        act = self.float_act(sym, fake)
        if act.nhwc:
            slot = self.emit(lambda x: np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
                             [act.slot], info.name)  # fmt: skip
        else:
            slot = self.emit(np.ascontiguousarray, [act.slot], info.name)
        self.output_slots[info.name] = slot

    # -- operators -----------------------------------------------------------------------------

    def op_Identity(self, index: int, node: Node) -> None:  # noqa: N802
        self.syms[node.outputs[0]] = self.sym(node.inputs[0])

    def op_QuantizeLinear(self, index: int, node: Node) -> None:  # noqa: N802
        x = self.sym(node.inputs[0])
        zp_name = self.optional(node, 2)
        if isinstance(x, _Const):  # fold, e.g. float weights quantized in the graph
            scale = self.const(node.inputs[1]).astype(np.float32)
            zero_point = self.const(zp_name) if zp_name else np.zeros((), np.uint8)
            shape = [1] * x.value.ndim
            if scale.ndim:
                shape[_int_attr(node, "axis", 1) % x.value.ndim] = -1
            qmin, qmax = _quant_range(zero_point)
            q = np.rint(x.value.astype(np.float32) / scale.reshape(shape))
            q = np.clip(q + zero_point.reshape(shape).astype(np.float32), qmin, qmax)
            self.syms[node.outputs[0]] = _Const(q.astype(zero_point.dtype))
            return
        quant = self.runtime_quant(node, node.inputs[1], zp_name)
        act = self.float_act(x, node)
        slot = self.emit(_quantizer(quant), [act.slot], node.name)
        self.syms[node.outputs[0]] = _Act(slot, quant, act.nhwc)

    def op_DequantizeLinear(self, index: int, node: Node) -> None:  # noqa: N802
        x = self.sym(node.inputs[0])
        zp_name = self.optional(node, 2)
        if isinstance(x, _Const):
            if x.value.dtype.kind not in "iu":
                raise TypeError("DequantizeLinear of a float constant")
            scale = self.const(node.inputs[1]).astype(np.float32)
            zero_point = self.const(zp_name) if zp_name else np.zeros((), x.value.dtype)
            axis = _int_attr(node, "axis", 1) % max(x.value.ndim, 1)
            shape = [1] * x.value.ndim
            if scale.ndim:
                shape[axis] = -1
            wide = np.dtype(np.int32 if x.value.dtype.itemsize < 4 else np.int64)  # exact, small
            centered: Array = np.subtract(
                x.value.astype(wide), zero_point.astype(wide).reshape(shape), dtype=wide
            )
            self.syms[node.outputs[0]] = _QConst(
                centered, scale.reshape(-1) if scale.ndim else scale, axis
            )
            return
        if not isinstance(x, _Act) or x.quant is None:
            raise TypeError("DequantizeLinear of a float tensor")
        quant = self.runtime_quant(node, node.inputs[1], zp_name)
        offset = x.quant.zero_point - quant.zero_point
        act = x
        if offset or quant.scale != x.quant.scale:
            slot = (
                self.emit(lambda v: v + np.float32(offset), [x.slot], node.name)
                if offset
                else x.slot
            )
            low, high = x.quant.low + offset, x.quant.high + offset
            act = _Act(slot, _Quant(quant.scale, quant.zero_point, low, high), x.nhwc)
        self.syms[node.outputs[0]] = _Deq(act)

    def op_Relu(self, index: int, node: Node) -> None:  # noqa: N802
        act = self.float_act(self.sym(node.inputs[0]), node)
        slot = self.emit(lambda x: np.maximum(x, np.float32(0)), [act.slot], node.name)
        self.syms[node.outputs[0]] = _Act(slot, None, act.nhwc)

    def op_Sigmoid(self, index: int, node: Node) -> None:  # noqa: N802
        act = self.float_act(self.sym(node.inputs[0]), node)
        slot = self.emit(_sigmoid, [act.slot], node.name)
        self.syms[node.outputs[0]] = _Act(slot, None, act.nhwc)

    def op_Flatten(self, index: int, node: Node) -> None:  # noqa: N802
        axis = _int_attr(node, "axis", 1)

        def flatten(x: Array) -> Array:
            cut = axis % x.ndim if x.ndim else 0
            return x.reshape(int(np.prod(x.shape[:cut])), -1)

        self.layout_op(node, flatten)

    def op_Reshape(self, index: int, node: Node) -> None:  # noqa: N802
        target = [int(d) for d in self.const(node.inputs[1]).reshape(-1)]
        allow_zero = bool(_int_attr(node, "allowzero", 0))

        def reshape(x: Array) -> Array:
            shape = [x.shape[i] if d == 0 and not allow_zero else d for i, d in enumerate(target)]
            return x.reshape(shape)

        self.layout_op(node, reshape)

    def layout_op(self, node: Node, fn: Callable[[Array], Array]) -> None:
        """Apply a shape-only op to the stored (possibly quantized) values, in NCHW order."""
        x = self.sym(node.inputs[0])
        deq = isinstance(x, _Deq)
        act = x.act if isinstance(x, _Deq) else x
        if not isinstance(act, _Act):
            raise TypeError("a runtime tensor was expected")

        def run(v: Array) -> Array:
            return fn(v.transpose(0, 3, 1, 2) if act.nhwc else v)

        out = _Act(self.emit(run, [act.slot], node.name), act.quant, False)
        self.syms[node.outputs[0]] = _Deq(out) if deq else out

    def op_GlobalAveragePool(self, index: int, node: Node) -> None:  # noqa: N802
        x = self.sym(node.inputs[0])
        act = x.act if isinstance(x, _Deq) else x
        if not isinstance(act, _Act) or not act.nhwc:
            raise TypeError("GlobalAveragePool needs a 4-D runtime tensor")
        quantized = isinstance(x, _Deq) and act.quant is not None
        target = self.requant_target(node.outputs[0], allow_relu=False) if quantized else None
        if target is not None and act.quant is not None:
            _, quant, q_node = target
            fn = _qlinear_global_average_pool(act.quant.scale, quant)
            self.syms[q_node.outputs[0]] = _Act(self.emit(fn, [act.slot], node.name), quant, True)
            return
        act = self.float_act(x, node)
        slot = self.emit(lambda v: v.mean(axis=(1, 2), keepdims=True), [act.slot], node.name)
        self.syms[node.outputs[0]] = _Act(slot, None, True)

    def op_Conv(self, index: int, node: Node) -> None:  # noqa: N802
        x, w = self.sym(node.inputs[0]), self.sym(node.inputs[1])
        bias_name = self.optional(node, 2)
        if not isinstance(w, _QConst | _Const) or _rank(w) != 4:
            raise self.error(node, "a Conv whose weights are not a constant 4-D tensor")
        weight_shape = w.centered.shape if isinstance(w, _QConst) else w.value.shape
        out_ch, in_per_group, kh, kw = (int(d) for d in weight_shape)
        group = _int_attr(node, "group", 1)
        if _ints_attr(node, "dilations", [1, 1]) != [1, 1]:
            raise self.error(node, "dilated Conv")
        auto_pad = node.attributes.get("auto_pad", "NOTSET")
        pads = _ints_attr(node, "pads", [0, 0, 0, 0])
        if auto_pad == "VALID":
            pads = [0, 0, 0, 0]
        elif auto_pad != "NOTSET":
            raise self.error(node, f"Conv auto_pad={auto_pad}")
        strides = tuple(_ints_attr(node, "strides", [1, 1]))
        if len(pads) != 4 or min(pads) < 0 or len(strides) != 2 or min(strides) < 1:
            raise self.error(node, f"Conv pads {pads} / strides {strides}")
        if group == 1:
            kind = "pointwise" if (kh, kw, *strides, *pads) == (1, 1, 1, 1, 0, 0, 0, 0) else "dense"
        elif in_per_group == 1 and group == out_ch:
            kind = "depthwise"
        else:
            raise self.error(node, f"grouped Conv (group={group})")
        geometry = _ConvGeometry(kind, kh, kw, strides[0], strides[1], tuple(pads))

        if isinstance(x, _Deq) and (x_quant := x.act.quant) is not None and isinstance(w, _QConst):
            if w.scale.ndim and w.axis != 0:
                raise self.error(node, "Conv weight scales not along the output channels")
            act = x.act
            w_scale = np.broadcast_to(w.scale, (out_ch,)).astype(np.float32)
            acc_scale = (x_quant.scale * w_scale).astype(np.float32)  # x_scale * w_scale
            bias = self.integer_bias(bias_name, acc_scale, out_ch)
            weights = w.centered
            reach = max(abs(x_quant.low), abs(x_quant.high))
            per_channel = np.abs(weights).reshape(out_ch, -1).sum(axis=1) * reach + np.abs(bias)
            dtype = np.float32 if per_channel.max() < _EXACT_FLOAT32 else np.float64
            kernel = geometry.kernel(weights, dtype)
            target = self.requant_target(node.outputs[0], allow_relu=True)
            if target is not None:
                relu, quant, q_node = target
                multiplier = (acc_scale / quant.scale).astype(np.float32)  # ORT's order
                low = max(quant.low, 0) if relu else quant.low
                fn = _requantized(kernel, bias.astype(dtype), multiplier, low, quant.high)
                slot = self.emit(fn, [act.slot], node.name)
                self.syms[q_node.outputs[0]] = _Act(slot, quant, True)
                return
            fn = _scaled(kernel, bias.astype(dtype), acc_scale)
            self.syms[node.outputs[0]] = _Act(self.emit(fn, [act.slot], node.name), None, True)
            return

        act = self.float_act(x, node)
        if not act.nhwc:
            raise TypeError("Conv needs a 4-D input")
        weights_f = w.dequantized() if isinstance(w, _QConst) else w.value.astype(np.float32)
        bias_f = self.float_const(bias_name, out_ch)
        fn = _biased(geometry.kernel(weights_f, np.float32), bias_f)
        self.syms[node.outputs[0]] = _Act(self.emit(fn, [act.slot], node.name), None, True)

    def op_Gemm(self, index: int, node: Node) -> None:  # noqa: N802
        a, b = self.sym(node.inputs[0]), self.sym(node.inputs[1])
        alpha = np.float32(_float_attr(node, "alpha", 1.0))
        beta = np.float32(_float_attr(node, "beta", 1.0))
        trans_b = _int_attr(node, "transB", 0)
        if _int_attr(node, "transA", 0):
            raise self.error(node, "Gemm with transA")
        if not isinstance(b, _QConst | _Const) or _rank(b) != 2:
            raise self.error(node, "a Gemm whose B is not a constant matrix")
        c_name = self.optional(node, 2)
        if isinstance(a, _Deq) and (a_quant := a.act.quant) is not None and isinstance(b, _QConst):
            act = a.act
            matrix = b.centered.T if trans_b else b.centered  # [K, N]
            out_axis = 0 if trans_b else 1
            if b.scale.ndim and b.axis != out_axis:
                raise self.error(node, "Gemm weight scales not along the output columns")
            width = matrix.shape[1]
            acc_scale = (a_quant.scale * np.broadcast_to(b.scale, (width,))).astype(np.float32)
            bias = self.integer_bias(c_name, acc_scale, width, float(beta))
            reach = max(abs(a_quant.low), abs(a_quant.high))
            worst = (np.abs(matrix).sum(axis=0) * reach + np.abs(bias)).max()
            dtype = np.float32 if worst < _EXACT_FLOAT32 else np.float64
            kernel = _matmul(matrix.astype(dtype))
            target = self.requant_target(node.outputs[0], allow_relu=False)
            if target is not None:
                _, quant, q_node = target
                multiplier = (acc_scale * alpha / quant.scale).astype(np.float32)
                fn = _requantized(kernel, bias.astype(dtype), multiplier, quant.low, quant.high)
                slot = self.emit(fn, [act.slot], node.name)
                self.syms[q_node.outputs[0]] = _Act(slot, quant, False)
                return
            fn = _scaled(kernel, bias.astype(dtype), (acc_scale * alpha).astype(np.float32))
            self.syms[node.outputs[0]] = _Act(self.emit(fn, [act.slot], node.name), None, False)
            return
        act = self.float_act(a, node)
        if act.nhwc:
            raise TypeError("Gemm needs a 2-D input")
        matrix_f = b.dequantized() if isinstance(b, _QConst) else b.value.astype(np.float32)
        matrix_f = (matrix_f.T if trans_b else matrix_f) * alpha
        width = matrix_f.shape[1]
        bias_f = self.float_const(c_name, width) * beta
        fn = _biased(_matmul(np.ascontiguousarray(matrix_f, np.float32)), bias_f)
        self.syms[node.outputs[0]] = _Act(self.emit(fn, [act.slot], node.name), None, False)

    def integer_bias(
        self, name: str | None, acc_scale: Floats, width: int, beta: float = 1.0
    ) -> Array:
        """Return the bias in accumulator units (x_scale * w_scale), as onnxruntime adds it."""
        if name is None:
            return np.zeros(width, np.int64)
        sym = self.sym(name)
        if (
            isinstance(sym, _QConst)
            and beta == 1
            and sym.centered.size == width
            and np.array_equal(np.broadcast_to(sym.scale, (width,)), acc_scale)
        ):
            return sym.centered.reshape(width)
        value = self.float_const(name, width) * np.float32(beta)
        return np.rint(value.astype(np.float64) / acc_scale.astype(np.float64)).astype(np.int64)

    def float_const(self, name: str | None, width: int) -> Floats:
        """Return a bias as float32 [width] (zeros when absent)."""
        if name is None:
            return np.zeros(width, np.float32)
        sym = self.sym(name)
        if isinstance(sym, _QConst):
            value = sym.dequantized()
        elif isinstance(sym, _Const):
            value = sym.value.astype(np.float32)
        else:
            raise TypeError(f"{name!r} must be a constant")
        return np.broadcast_to(value.reshape(-1), (width,)).astype(np.float32)


def _int_attr(node: Node, name: str, default: int) -> int:
    value = node.attributes.get(name, default)
    if not isinstance(value, int):
        raise TypeError(f"attribute {name} must be an int")
    return value


def _float_attr(node: Node, name: str, default: float) -> float:
    value = node.attributes.get(name, default)
    if not isinstance(value, float | int):
        raise TypeError(f"attribute {name} must be a float")
    return float(value)


def _ints_attr(node: Node, name: str, default: list[int]) -> list[int]:
    value = node.attributes.get(name, default)
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise TypeError(f"attribute {name} must be a list of ints")
    return [int(v) for v in value]


def _rank(sym: _QConst | _Const) -> int:
    return sym.centered.ndim if isinstance(sym, _QConst) else sym.value.ndim


# -- kernels -----------------------------------------------------------------------------------

_Kernel = Callable[[Array], Array]


@dataclass(frozen=True, slots=True)
class _ConvGeometry:
    kind: str  # pointwise, dense or depthwise
    kh: int
    kw: int
    sh: int
    sw: int
    pads: tuple[int, ...]  # top, left, bottom, right

    def kernel(self, weights: Array, dtype: type[np.floating[Any]]) -> _Kernel:
        """Return x (NHWC) -> accumulator (NHWC, no bias) for ONNX weights [M, C/g, kh, kw]."""
        if self.kind == "pointwise":
            return _matmul(np.ascontiguousarray(weights[:, :, 0, 0].T, dtype))
        if self.kind == "depthwise":
            taps = np.ascontiguousarray(weights[:, 0].transpose(1, 2, 0), dtype)  # [kh, kw, C]
            if self.sh == self.sw == 1:
                return self._depthwise_flat(taps, dtype)
            return self._depthwise_strided(taps, dtype)
        # dense: im2col, rows ordered (i, j, c) to match the window layout
        matrix = weights.transpose(2, 3, 1, 0).reshape(-1, weights.shape[0])
        return self._dense(_matmul(np.ascontiguousarray(matrix, dtype)), dtype)

    def _padded(self, x: Array, dtype: type[np.floating[Any]]) -> tuple[Array, int, int]:
        """Zero-pad x (plus one spare row at the bottom); return it with out_h, out_w."""
        n, h, w, c = x.shape
        top, left, bottom, right = self.pads
        height, width = h + top + bottom, w + left + right
        out_h = (height - self.kh) // self.sh + 1
        out_w = (width - self.kw) // self.sw + 1
        if out_h < 1 or out_w < 1:
            raise ValueError(f"Conv input {x.shape} smaller than the kernel")
        padded = np.zeros((n, height + 1, width, c), dtype)
        padded[:, top : top + h, left : left + w] = x
        return padded, out_h, out_w

    def _windows(self, padded: Array, out_h: int, out_w: int) -> Array:
        """Return the read-only view [kh, kw, N, out_h, out_w, C] of every tap's input."""
        sn, sy, sx, sc = padded.strides
        return as_strided(
            padded,
            (self.kh, self.kw, padded.shape[0], out_h, out_w, padded.shape[3]),
            (sy, sx, sn, self.sh * sy, self.sw * sx, sc),
            writeable=False,
        )

    def _depthwise_flat(self, taps: Array, dtype: type[np.floating[Any]]) -> _Kernel:
        """Stride 1: every tap is one contiguous run of the padded image, rows ``width`` long.

        The output is computed on a grid as wide as the padded input (the columns past out_w
        are discarded), so one einsum over [kh, kw, N, out_h, width*C] does all taps.
        """
        tiled: dict[int, Array] = {}  # padded width -> taps repeated along it [kh, kw, width*C]

        def run(x: Array) -> Array:
            n, c = x.shape[0], x.shape[3]
            padded, out_h, out_w = self._padded(x, dtype)
            width = padded.shape[2]
            weights = tiled.get(width)
            if weights is None:
                weights = np.tile(taps[:, :, np.newaxis, :], (1, 1, width, 1))
                weights = tiled[width] = weights.reshape(self.kh, self.kw, width * c)
            sn, sy, sx, sc = padded.strides
            view = as_strided(
                padded,
                (self.kh, self.kw, n, out_h, width * c),
                (sy, sx, sn, sy, sc),
                writeable=False,
            )
            acc = np.einsum("ijnhl,ijl->nhl", view, weights)
            result: Array = acc.reshape(n, out_h, width, c)[:, :, :out_w]
            return result

        return run

    def _depthwise_strided(self, taps: Array, dtype: type[np.floating[Any]]) -> _Kernel:
        def run(x: Array) -> Array:
            padded, out_h, out_w = self._padded(x, dtype)
            windows = self._windows(padded, out_h, out_w)
            result: Array = np.einsum("ijnyxc,ijc->nyxc", windows, taps)
            return result

        return run

    def _dense(self, matmul: _Kernel, dtype: type[np.floating[Any]]) -> _Kernel:
        def run(x: Array) -> Array:
            padded, out_h, out_w = self._padded(x, dtype)
            windows = self._windows(padded, out_h, out_w).transpose(2, 3, 4, 0, 1, 5)
            cols = np.ascontiguousarray(windows).reshape(x.shape[0], out_h, out_w, -1)
            return matmul(cols)

        return run


def _matmul(matrix: Array) -> _Kernel:
    """Return x [..., K] -> x @ matrix [..., N] in matrix's dtype (BLAS)."""
    transposed = np.ascontiguousarray(matrix.T)  # [N, K]; the only copy kept
    depth, width = matrix.shape

    def run(x: Array) -> Array:
        flat = x.reshape(-1, x.shape[-1])
        if flat.dtype != transposed.dtype:
            flat = flat.astype(transposed.dtype)
        # OpenBLAS is faster with the big operand first when there are few rows (late layers)
        out = (transposed @ flat.T).T if len(flat) <= depth else flat @ transposed.T
        return out.reshape(*x.shape[:-1], width)

    return run


def _requantized(kernel: _Kernel, bias: Array, multiplier: Floats, low: int, high: int) -> _Kernel:
    """Integer accumulation + bias, then onnxruntime's requantization, as centered float32."""
    low_f, high_f = np.float32(low), np.float32(high)

    def run(x: Array) -> Array:
        acc = kernel(x)
        acc += bias
        if acc.dtype != np.float32:
            acc = acc.astype(np.float32)  # exact: |acc| < 2**24 is what ORT's cvtepi32_ps sees
        acc *= multiplier
        np.rint(acc, out=acc)
        return np.clip(acc, low_f, high_f, out=acc)

    return run


def _scaled(kernel: _Kernel, bias: Array, scale: Floats) -> _Kernel:
    """Integer accumulation + bias, then dequantized to float32 (no output quantization)."""

    def run(x: Array) -> Array:
        acc = kernel(x)
        acc += bias
        out = acc.astype(np.float32, copy=False)
        out *= scale
        return out

    return run


def _biased(kernel: _Kernel, bias: Floats) -> _Kernel:
    def run(x: Array) -> Array:
        out = kernel(x.astype(np.float32, copy=False))
        out += bias
        return out

    return run


def _quantizer(quant: _Quant) -> _Kernel:
    """QuantizeLinear: x / scale, round half to even, saturate; held as (q - zero_point)."""
    scale, low, high = quant.scale, np.float32(quant.low), np.float32(quant.high)

    def run(x: Array) -> Array:
        q = np.divide(x, scale, dtype=np.float32)
        np.rint(q, out=q)
        return np.clip(q, low, high, out=q)

    return run


def _qlinear_global_average_pool(x_scale: np.float32, quant: _Quant) -> _Kernel:
    """Emulate onnxruntime's QLinearGlobalAveragePool: rint(sum * x_scale / (y_scale * H*W))."""
    low, high = np.float32(quant.low), np.float32(quant.high)

    def run(x: Array) -> Array:
        size = np.float32(x.shape[1] * x.shape[2])
        multiplier = np.float32(x_scale / np.float32(quant.scale * size))
        acc: Array = x.sum(axis=(1, 2), keepdims=True, dtype=np.float32)  # exact: small ints
        acc *= multiplier
        np.rint(acc, out=acc)
        np.clip(acc, low, high, out=acc)
        return acc

    return run


def _sigmoid(x: Array) -> Array:
    with np.errstate(over="ignore"):
        out = np.exp(-x)
        out += np.float32(1)
        np.reciprocal(out, out=out)
        return out
