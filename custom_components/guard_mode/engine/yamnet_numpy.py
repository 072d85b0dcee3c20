"""Pure-numpy backend: YAMNet's fixed MobileNet-v1 forward pass on int8 weights.

The weights come from ``engine/data/yamnet.npz``, exported from the ONNX model at build time
(``models/build_yamnet.py``; its sha256 is in ``models/yamnet/MODEL_CARD.md`` and checked here at
load). Nothing is parsed or compiled at run time: the network is the code below.

Layout: a 3x3 stride-2 convolution (1 -> 32 channels), then 13 depthwise 3x3 + pointwise 1x1
pairs (:data:`DEPTHWISE_STRIDES`), global average pooling (the 1024-d embedding) and a
1024 -> 521 classifier with a sigmoid. Stride-1 convolutions pad one row and column on every
side, stride-2 ones one at the bottom and right (TensorFlow's SAME).

The arithmetic is onnxruntime's for the model's QDQ graph, exactly: activations are uint8 (held
here as float32 integers minus the zero point), every convolution sums integer products exactly
(float32 holds every partial sum: the build checks each layer's worst case is below 2**24) plus
the int32 bias, then requantizes as ``clip(rint(acc * multiplier), 0, 255)`` with onnxruntime's
float32 ``multiplier = (x_scale * w_scale) / y_scale`` (computed at build time). Activations are
NHWC so that a 1x1 convolution is one BLAS product and a depthwise one a few vector operations.
"""

from __future__ import annotations

from collections.abc import Callable
import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
import numpy.typing as npt

__all__ = ["WEIGHTS_SHA256", "ModelError", "YamnetNumpy"]

Floats = npt.NDArray[np.float32]
Array = npt.NDArray[Any]

# sha256 of engine/data/yamnet.npz, as in models/yamnet/MODEL_CARD.md (`build_yamnet.py --check`).
WEIGHTS_SHA256 = "e13976ac76b0364f87483815b48943ea9191a8cebdb15d49ba05b66d44e11605"
#: Stride of the depthwise convolution of each of the 13 depthwise + pointwise pairs.
DEPTHWISE_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
UINT8_MAX = np.float32(255)


class ModelError(Exception):
    """The model or weights file is missing, unreadable, damaged or not what is expected."""


def conv_names() -> list[str]:
    """Return the weight-file names of the 27 convolutions, in order."""
    names = ["conv0"]
    for index in range(1, len(DEPTHWISE_STRIDES) + 1):
        names += [f"dw{index}", f"pw{index}"]
    return names


class _Conv:
    """One convolution + ReLU + requantization, with its constants ready for numpy."""

    def __init__(self, weights: dict[str, Array], name: str) -> None:
        self.bias = weights[f"{name}_bias"].astype(np.float32)  # exact: |bias| < 2**24
        self.multiplier = weights[f"{name}_multiplier"].astype(np.float32)

    def requantize(self, acc: Floats) -> Floats:
        """Add the bias, scale, round half to even and saturate to uint8, in place."""
        acc += self.bias
        acc *= self.multiplier
        np.rint(acc, out=acc)
        return np.clip(acc, 0, UINT8_MAX, out=acc)


def _weight(weights: dict[str, Array], name: str) -> Array:
    """Return a convolution's int8 weights, ONNX layout [M, C/group, kh, kw]."""
    return weights[f"{name}_weight"]


class _Pointwise(_Conv):
    """1x1 convolution: one BLAS product."""

    def __init__(self, weights: dict[str, Array], name: str) -> None:
        super().__init__(weights, name)
        self.matrix = np.ascontiguousarray(_weight(weights, name)[:, :, 0, 0], np.float32)  # [M, C]
        self.bias_column = self.bias[:, np.newaxis]
        self.multiplier_column = self.multiplier[:, np.newaxis]

    def __call__(self, x: Floats) -> Floats:
        n, h, w, c = x.shape
        flat = x.reshape(-1, c)
        if len(flat) > c:
            return self.requantize(flat @ self.matrix.T).reshape(n, h, w, -1)
        # Few rows (late layers): OpenBLAS is faster with the weights first; the result
        # [M, rows] is requantized as it is and handed on transposed (no copy).
        acc = self.matrix @ flat.T
        acc += self.bias_column
        acc *= self.multiplier_column
        np.rint(acc, out=acc)
        np.clip(acc, 0, UINT8_MAX, out=acc)
        return acc.T.reshape(n, h, w, -1)


class _Depthwise(_Conv):
    """3x3 depthwise convolution: one einsum over a strided view of the padded input."""

    def __init__(self, weights: dict[str, Array], name: str, stride: int) -> None:
        super().__init__(weights, name)
        self.stride = stride
        taps = _weight(weights, name)[:, 0].transpose(1, 2, 0)  # [3, 3, C]
        self.taps = np.ascontiguousarray(taps, np.float32)
        self._tiled: dict[int, Floats] = {}  # padded width -> taps repeated along it

    def __call__(self, x: Floats) -> Floats:
        n, h, w, c = x.shape
        if self.stride == 1:
            padded = np.zeros((n, h + 3, w + 2, c), np.float32)  # +1 spare row for the flat view
            padded[:, 1 : h + 1, 1 : w + 1] = x
            if h * w * c >= _FLAT_MIN:
                return self.requantize(self._flat(padded, h, w))
            out_h, out_w = h, w
        else:
            padded = np.zeros((n, h + 1, w + 1, c), np.float32)
            padded[:, :h, :w] = x
            out_h, out_w = h // 2, w // 2
        sn, sy, sx, sc = padded.strides
        s = self.stride
        windows = as_strided(
            padded, (n, out_h, out_w, 3, 3, c), (sn, s * sy, s * sx, sy, sx, sc), writeable=False
        )
        return self.requantize(np.einsum("nyxijc,ijc->nyxc", windows, self.taps))

    def _flat(self, padded: Floats, h: int, w: int) -> Floats:
        """Stride 1 on large maps: each tap is one run of the padded rows (one einsum).

        The output is computed as wide as the padded input; the columns past w are dropped.
        """
        n, _, width, c = padded.shape
        taps = self._tiled.get(width)
        if taps is None:
            taps = np.tile(self.taps[:, :, np.newaxis, :], (1, 1, width, 1))
            taps = self._tiled[width] = taps.reshape(3, 3, width * c)
        sn, sy, sx, sc = padded.strides
        view = as_strided(padded, (3, 3, n, h, width * c), (sy, sx, sn, sy, sc), writeable=False)
        acc = np.einsum("ijnhl,ijl->nhl", view, taps).reshape(n, h, width, c)
        return np.ascontiguousarray(acc[:, :, :w])


_FLAT_MIN = 24 * 16 * 64  # the flat einsum wins on maps at least this large (measured)


class _FirstConv(_Conv):
    """3x3 stride 2, one input channel: an im2col product."""

    def __init__(self, weights: dict[str, Array], name: str) -> None:
        super().__init__(weights, name)
        weight = _weight(weights, name)
        self.matrix = np.ascontiguousarray(weight[:, 0].reshape(len(weight), 9).T, np.float32)
        # [9, M], rows (i, j)

    def __call__(self, x: Floats) -> Floats:
        n, h, w = x.shape
        padded = np.zeros((n, h + 1, w + 1), np.float32)
        padded[:, :h, :w] = x
        sn, sy, sx = padded.strides
        cols = as_strided(
            padded, (n, h // 2, w // 2, 3, 3), (sn, 2 * sy, 2 * sx, sy, sx), writeable=False
        )
        acc = np.ascontiguousarray(cols).reshape(-1, 9) @ self.matrix
        return self.requantize(acc).reshape(n, h // 2, w // 2, -1)


def read_weights(path: Path) -> dict[str, Array]:
    """Read the weights file, checking it is exactly the one Guard Mode ships."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise ModelError(
            f"{path}: weights file not found (expected YAMNet's int8 weights)"
        ) from err
    except OSError as err:
        raise ModelError(f"{path}: cannot read the weights file ({err.strerror or err})") from err
    if hashlib.sha256(data).hexdigest() != WEIGHTS_SHA256:
        raise ModelError(f"{path}: the file is damaged (it is not the weights Guard Mode ships)")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


class YamnetNumpy:
    """YAMNet's forward pass: :meth:`run` maps patches to scores and embeddings."""

    def __init__(self, path: Path) -> None:
        """Load the weights from path (raises ModelError)."""
        weights = read_weights(path)
        try:
            self._input_scale = np.float32(weights["input_scale"])
            self._input_zero_point = np.float32(weights["input_zero_point"])
            names = conv_names()
            self._layers: list[Callable[[Floats], Floats]] = [_FirstConv(weights, names[0])]
            for index, stride in enumerate(DEPTHWISE_STRIDES):
                self._layers.append(_Depthwise(weights, names[1 + 2 * index], stride))
                self._layers.append(_Pointwise(weights, names[2 + 2 * index]))
            self._pool_multiplier = np.float32(weights["pool_multiplier"])
            self._embedding_scale = np.float32(weights["embedding_scale"])
            self._classifier = np.ascontiguousarray(weights["classifier_weight"], np.float32)
            self._classifier_bias = weights["classifier_bias"].astype(np.float32)
            self._classifier_scale = weights["classifier_scale"].astype(np.float32)
        except (KeyError, IndexError, ValueError) as err:  # a build that doesn't match the code
            raise ModelError(f"{path}: not YAMNet's weights ({err!r})") from err

    def run(self, patches: Floats, *, embeddings: bool = True) -> tuple[Floats, Floats | None]:
        """Return scores [N, 521] (and embeddings [N, 1024]) for patches [N, 96, 64]."""
        # QuantizeLinear: x / scale, round half to even, add the zero point, saturate
        x = np.divide(patches, self._input_scale, dtype=np.float32)
        np.rint(x, out=x)
        zero = self._input_zero_point
        x = np.clip(x, -zero, UINT8_MAX - zero, out=x)  # centered: (q - zero point)
        for layer in self._layers:
            x = layer(x)
        # QLinearGlobalAveragePool: rint(sum * x_scale / (y_scale * H * W)), saturated
        pooled = x.sum(axis=(1, 2), dtype=np.float32)  # exact: small integers
        pooled *= self._pool_multiplier
        np.rint(pooled, out=pooled)
        np.clip(pooled, 0, UINT8_MAX, out=pooled)
        # classifier: integer product + int32 bias, dequantized, then the sigmoid
        logits = (
            (self._classifier @ pooled.T).T if len(pooled) <= 8 else pooled @ self._classifier.T
        )
        logits = np.ascontiguousarray(logits)
        logits += self._classifier_bias
        logits *= self._classifier_scale
        with np.errstate(over="ignore"):
            scores = np.exp(-logits)
        scores += np.float32(1)
        np.reciprocal(scores, out=scores)
        return scores, (pooled * self._embedding_scale if embeddings else None)
