# SPDX-License-Identifier: GPL-3.0-or-later
"""Linear degradation operators for SING-Zero (docs/ALGORITHMS.md §4), in SVD form for DDNM/DDNM+.

Every operator is A = U Σ Vᵀ with an *orthonormal* V that we can apply cheaply:

- `to_spectral(x)  = Vᵀ x`  and `from_spectral(v) = V v`  (image shape ↔ the same shape),
- `singular_values` (broadcastable to (B, C, H, W) in that spectral layout; 0 = null space of A),
- `A(x)`, `A_pinv(y)` in image space, and `pinv_spectral(y) = Vᵀ A† y` (what the guided loop uses).

DDNM+ (arXiv 2212.00490, Eq. 17–19 and the SVD form of its appendix) scales the range-space
correction per singular value: component i of Vᵀx is observed with gain s_i and noise σ_{y,i}, i.e.
with noise σ_{y,i}/s_i in x units. That is why the spectral layout matters, not just A and A†.

Each operator also owns its side of the SING-Zero model (docs/ALGORITHMS.md §4 table):
`observation(x̂)` (the y made from a DeepJSCC output), `noise_std(point, x̂)` (σ_y: calibrated, or
blind) and `spectral_noise(σ_y)` (ν_i = σ_{y,i}/s_i, the noise model DDNM+ weighs with, Eq. 19).

Operators (all linear; the affine map between [0, 1] and [-1, 1] images is handled by the sampler):

`identity`   A = I. V = I, s = 1.
`avgpool-s`  s×s average pooling; y has shape (C, H/s, W/s). In each s×s block take the orthonormal
             block basis = the s×s 2-D DCT-II: its DC vector is the constant 1/s, and
             mean(block) = (1/s²)·Σ = (1/s)·⟨block, 1/s⟩, so A = U Σ Vᵀ with U = I (one pooled pixel per
             block), one singular value **1/s** per block (at the block's DC slot) and s² − 1 zeros.
             A† = V Σ⁺ Uᵀ: the DC coefficient becomes s·y, i.e. A†y = y replicated over the block
             (nearest up-sampling). Noise σ_y on a pooled pixel is therefore s·σ_y in x units: DDNM+
             trusts a pooled pixel less than a full pixel with the same σ_y.
`spectral`   A = Cᵀ diag(h) C, C = orthonormal 2-D DCT-II per colour channel (symmetric boundaries).
             U = V·sign(h) = Cᵀ, singular values |h(f)|. Gains with |h| ≤ τ are set to 0 *in A itself*
             (A is the truncated fit), so A† = Cᵀ diag(1/h · [|h| > τ]) C is its exact pseudo-inverse
             and A A† A = A holds. h may be per image: (B, C, H, W).
"""
from __future__ import annotations

import copy
import re
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from .blind import blind_sigma
from .dct import dct2, dct_matrix, idct2


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(image_shape) != 3 or any(int(v) < 1 for v in image_shape):
        raise InputError(f"image_shape must be (C, H, W) with positive sizes, got {tuple(image_shape)}")
    return tuple(int(v) for v in image_shape)  # type: ignore[return-value]


class LinearOperator:
    """Base class: A = U Σ Vᵀ on images (B, C, H, W); see the module docstring."""

    name = "linear"

    def __init__(self, image_shape: Sequence[int]):
        self.image_shape = _check_image_shape(image_shape)
        self.batch_size: int | None = None      # set when parameters are per image

    # --- to implement ---------------------------------------------------------------------------
    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def from_spectral(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    singular_values: torch.Tensor

    def observation_shape(self) -> tuple[int, ...]:
        return self.image_shape

    def to(self, device: torch.device | str) -> "LinearOperator":
        """A copy with every tensor attribute (singular values, gains) on `device`."""
        out = copy.copy(self)
        out.__dict__.update({k: v.to(device) for k, v in vars(self).items() if torch.is_tensor(v)})
        return out

    def noise_std(self, point, x_hat: torch.Tensor, where: str = "the calibration"):
        """(σ_y on the [0, 1] scale in the observation basis, "calibrated" | "blind") for y =
        observation(x̂); point: a CalibrationPoint at the images' SNRs, or None (module doc)."""
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------------
    def observation(self, x_hat: torch.Tensor) -> torch.Tensor:
        """y for a DeepJSCC output x̂ (docs/ALGORITHMS.md §4 table): A·x̂ unless the operator says."""
        return self.A(x_hat)

    def spectral_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        """ν_i = σ_{y,i}/s_i: component i's observation noise in x units (0 in the null space)."""
        s = self.singular_values
        return torch.where(s > 0, sigma / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s * sigma))

    def pinv_spectral(self, y: torch.Tensor) -> torch.Tensor:
        """Vᵀ A† y."""
        return self.to_spectral(self.A_pinv(y))

    def range_mask(self) -> torch.Tensor:
        """1 where the spectral component is observed (s_i > 0), 0 in the null space."""
        return (self.singular_values > 0).to(self.singular_values.dtype)

    def check_observation(self, y: torch.Tensor) -> torch.Tensor:
        """Raise InputError unless y is a finite float tensor (B, *observation_shape)."""
        want = self.observation_shape()
        if not torch.is_tensor(y) or not y.is_floating_point():
            raise InputError(f"the observation must be a float tensor (B, {', '.join(map(str, want))}), "
                             f"got {type(y).__name__} {getattr(y, 'dtype', '')}")
        if y.dim() != 4 or tuple(y.shape[1:]) != want:
            raise InputError(f"observation of shape {tuple(y.shape)} does not fit the {self.name} operator "
                             f"on {self.image_shape} images: expected (B, {', '.join(map(str, want))}); "
                             f"for avgpool pass A(x̂) (the pooled image), otherwise the image itself")
        if not torch.isfinite(y).all():
            raise InputError("the observation contains NaN or Inf: check the decoder output upstream")
        if self.batch_size is not None and y.shape[0] != self.batch_size:
            raise InputError(f"observation has batch {y.shape[0]} but the {self.name} operator holds per-image "
                             f"parameters for {self.batch_size} images")
        return y

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, image_shape={self.image_shape})"


class Identity(LinearOperator):
    """A = I (docs/ALGORITHMS.md §4 `identity`): y = x̂, DDNM+ then only denoises with σ_y."""

    name = "identity"

    def __init__(self, image_shape: Sequence[int]):
        super().__init__(image_shape)
        self.singular_values = torch.ones(1, 1, 1, 1)

    def A(self, x):
        return x

    def A_pinv(self, y):
        return y

    def to_spectral(self, x):
        return x

    def from_spectral(self, v):
        return v

    def noise_std(self, point, x_hat, where="the calibration"):
        if point is not None:
            return point.sigma_identity, "calibrated"
        return blind_sigma(x_hat).cpu(), "blind"


class AvgPool(LinearOperator):
    """s×s average pooling, A† = replicate up-sampling, singular value 1/s per block (see module doc)."""

    def __init__(self, image_shape: Sequence[int], factor: int):
        super().__init__(image_shape)
        c, h, w = self.image_shape
        s = int(factor)
        if s < 1:
            raise InputError(f"avgpool factor must be ≥ 1, got {factor}")
        if h % s or w % s:
            raise InputError(f"avgpool-{s} needs image sides divisible by {s}, got {h}×{w}: "
                             f"choose a factor that divides both (e.g. 2, 4, 8 for 64×64)")
        self.factor = s
        self.name = f"avgpool-{s}"
        sv = torch.zeros(1, 1, h, w)
        sv[..., ::s, ::s] = 1.0 / s         # the block-DC slot of every block
        self.singular_values = sv

    def observation_shape(self):
        c, h, w = self.image_shape
        return (c, h // self.factor, w // self.factor)

    def A(self, x):
        return F.avg_pool2d(x, self.factor) if self.factor > 1 else x

    def A_pinv(self, y):
        s = self.factor
        return y.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1) if s > 1 else y

    def _blocks(self, x, transform):
        b, c, h, w = x.shape
        s = self.factor
        d = dct_matrix(s, x.device, x.dtype)
        blk = x.reshape(b, c, h // s, s, w // s, s).transpose(3, 4)      # (B, C, Hb, Wb, s, s)
        blk = d @ blk @ d.T if transform else d.T @ blk @ d
        return blk.transpose(3, 4).reshape(b, c, h, w)

    def to_spectral(self, x):
        return self._blocks(x, True) if self.factor > 1 else x

    def from_spectral(self, v):
        return self._blocks(v, False) if self.factor > 1 else v

    def pinv_spectral(self, y):
        # Vᵀ A† y without two transforms: the block-DC coefficient of y replicated is s·y, rest 0.
        b, c, hh, ww = y.shape
        s = self.factor
        v = torch.zeros(b, c, hh * s, ww * s, device=y.device, dtype=y.dtype)
        v[..., ::s, ::s] = s * y
        return v

    def noise_std(self, point, x_hat, where="the calibration"):
        s = self.factor
        if point is None:
            return blind_sigma(x_hat).cpu() / s, "blind"      # white-noise assumption
        if s not in point.sigma_pool:
            raise InputError(f"{where} has σ_y for avgpool factors {sorted(point.sigma_pool)}, not {s}: "
                             f"re-run `sing calibrate` with --pool {s} or choose one of those")
        return point.sigma_pool[s], "calibrated"


class Spectral(LinearOperator):
    """A = Cᵀ diag(h) C per colour channel in the orthonormal DCT-II basis (see module doc).

    h: (C, H, W) or per image (B, C, H, W), real. |h| ≤ tau is treated as 0 (in A and in A†).
    """

    name = "spectral"

    def __init__(self, h: torch.Tensor, tau: float = 1e-2):
        if not torch.is_tensor(h) or h.dim() not in (3, 4):
            raise InputError(f"spectral gains h must be a tensor (C, H, W) or (B, C, H, W), "
                             f"got {tuple(getattr(h, 'shape', ()))}")
        if not torch.isfinite(h).all():
            raise InputError("spectral gains h contain NaN or Inf: the calibration is broken; re-run "
                             "`sing calibrate`")
        super().__init__(h.shape[-3:])
        if tau < 0:
            raise InputError(f"tau must be ≥ 0, got {tau}")
        self.tau = float(tau)
        h = h.float()
        gain = torch.where(h.abs() > tau, h, torch.zeros_like(h))
        if gain.dim() == 3:
            gain = gain[None]
        else:
            self.batch_size = gain.shape[0]
        self.gain = gain                                            # (1 | B, C, H, W)
        self.inv_gain = torch.where(gain != 0, 1.0 / torch.where(gain != 0, gain, torch.ones_like(gain)),
                                    torch.zeros_like(gain))
        self.singular_values = gain.abs()

    def A(self, x):
        return idct2(self.gain.to(x.dtype) * dct2(x))

    def A_pinv(self, y):
        return idct2(self.inv_gain.to(y.dtype) * dct2(y))

    def pinv_spectral(self, y):
        return self.inv_gain.to(y.dtype) * dct2(y)

    def to_spectral(self, x):
        return dct2(x)

    def observation(self, x_hat):
        return x_hat                    # x̂ ≈ A·x + n: the JSCC's degradation is the filter itself

    def noise_std(self, point, x_hat, where="the calibration"):
        return point.noise.sqrt(), "calibrated"                  # √N(f) per DCT coefficient

    def from_spectral(self, v):
        return idct2(v)


_AVGPOOL = re.compile(r"^avgpool-?(\d+)$")


def parse_operator_name(name: str) -> tuple[str, int | None]:
    """'identity' | 'spectral' | 'avgpool-4' (also 'avgpool4') -> (kind, pool factor or None)."""
    n = str(name).strip().lower()
    if n in ("identity", "spectral"):
        return n, None
    m = _AVGPOOL.match(n)
    if m:
        return "avgpool", int(m.group(1))
    raise InputError(f"unknown SING-Zero operator {name!r}: choose identity, spectral or avgpool-S "
                     f"(S = pooling factor, e.g. avgpool-4)")


def make_operator(name: str, image_shape: Sequence[int], h: torch.Tensor | None = None,
                  tau: float = 1e-2) -> LinearOperator:
    """Build an operator by name. `spectral` needs the gains h (from a Calibration)."""
    kind, s = parse_operator_name(name)
    if kind == "identity":
        return Identity(image_shape)
    if kind == "avgpool":
        return AvgPool(image_shape, s)
    if h is None:
        raise InputError("the spectral operator needs a calibration of this JSCC model (its per-frequency gains h): "
                         "run `sing calibrate --jscc MODEL --out DIR` and pass it, or use identity / avgpool-S "
                         "(blind σ_y)")
    op = Spectral(h, tau=tau)
    if op.image_shape != _check_image_shape(image_shape):
        raise InputError(f"the spectral gains are for {op.image_shape} images, not {tuple(image_shape)}: "
                         f"calibrate the JSCC at this image size")
    return op
