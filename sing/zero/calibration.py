# SPDX-License-Identifier: GPL-3.0-or-later
"""SING-Zero calibration: the LMMSE linear fit of a DeepJSCC degradation (docs/ALGORITHMS.md §4).

From pairs (x, x̂ = D(C(E(x), snr))) at each calibrated SNR, on the [0, 1] image scale, with
X = DCT-II(x) and X̂ = DCT-II(x̂) (orthonormal, per colour channel, dct.py):

    h(f) = E[X̂(f)·X(f)] / E[X(f)²]              clipped to [0, 1] (ALGORITHMS §4: a gain)
    N(f) = E[(X̂(f) − h(f)·X(f))²]               noise spectrum (variance per DCT coefficient)
    σ_identity = √E[(x̂ − x)²]                   (RMS error; equals the std when x̂ is unbiased)
    σ_pool[s]  = √E[(pool_s(x̂) − pool_s(x))²]   for each pooling factor s

Expectations are means over images (and pixels for the σ's). Everything is stored per SNR and
interpolated linearly in dB between calibrated SNRs; outside the range the nearest end is used and a
warning names the range. A calibration belongs to one JSCC `model_id` and is refused for any other
model. Files: a directory with model.safetensors + config.json (kind "sing.zero.calibration") +
README.md, like every sing model (sing.checkpoint).

Another size (docs/ALGORITHMS.md §4, "Other image sizes"). DCT-II coefficient k of an N-sample axis
is the frequency k/(2N) cycles per pixel, and for a stationary degradation both the gain and the
noise variance per orthonormal coefficient are functions of that frequency alone (a filter's
response; the noise power spectral density), not of N. `for_shape(C, H, W)` therefore evaluates the
stored h and N of an n-point axis at k' · n/N (the same frequency) by linear interpolation, per
axis, clamped at the highest stored frequency; σ_identity and σ_pool are per-pixel and per-block
statistics of a stationary error and stay as they are. The result is cached per shape.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..checkpoint import load_config, load_state, save_model
from ..errors import CheckpointError, InputError
from .dct import dct2

KIND = "sing.zero.calibration"
VERSION = 1


class SpectralStats:
    """Streaming sums for one SNR: Σ X², Σ X̂X, Σ X̂² per DCT coefficient, and the σ sums."""

    def __init__(self, pool_factors: Sequence[int] = ()):
        self.pool_factors = tuple(int(s) for s in pool_factors)
        self.n = 0
        self.sxx = self.sxy = self.syy = None
        self.err2 = 0.0
        self.npix = 0
        self.pool_err2 = {s: 0.0 for s in self.pool_factors}
        self.pool_npix = {s: 0 for s in self.pool_factors}

    def add(self, x: torch.Tensor, xhat: torch.Tensor) -> None:
        if x.shape != xhat.shape or x.dim() != 4:
            raise InputError(f"calibration pairs must be two (B, C, H, W) tensors of one shape, got "
                             f"{tuple(x.shape)} and {tuple(xhat.shape)}")
        x, xhat = x.double(), xhat.double()
        X, Xh = dct2(x), dct2(xhat)
        add = lambda acc, v: v.sum(0) if acc is None else acc + v.sum(0)
        self.sxx, self.sxy, self.syy = add(self.sxx, X * X), add(self.sxy, Xh * X), add(self.syy, Xh * Xh)
        self.n += x.shape[0]
        self.err2 += float(((xhat - x) ** 2).sum())
        self.npix += x.numel()
        for s in self.pool_factors:
            d = F.avg_pool2d(xhat, s) - F.avg_pool2d(x, s)
            self.pool_err2[s] += float((d ** 2).sum())
            self.pool_npix[s] += d.numel()

    def finish(self) -> dict[str, Any]:
        if self.n == 0:
            raise InputError("no calibration pairs were given")
        h = (self.sxy / self.sxx.clamp_min(1e-12)).clamp(0.0, 1.0)
        noise = ((self.syy - 2 * h * self.sxy + h * h * self.sxx) / self.n).clamp_min(0.0)
        return {"h": h.float(), "noise": noise.float(), "n": self.n,
                "sigma_identity": math.sqrt(self.err2 / self.npix),
                "sigma_pool": {s: math.sqrt(self.pool_err2[s] / self.pool_npix[s]) for s in self.pool_factors}}


def fit_pairs(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], pool_factors: Sequence[int] = ()) -> dict:
    """Fit h, N, σ's from (x, x̂) batches on the [0, 1] scale (e.g. recorded over the air)."""
    st = SpectralStats(pool_factors)
    for x, xh in pairs:
        st.add(x, xh)
    return st.finish()


@dataclass
class CalibrationPoint:
    """A calibration evaluated at per-image SNRs (B,), on one device."""
    snr_db: torch.Tensor                 # (B,) the SNRs used (after clamping)
    h: torch.Tensor                      # (B, C, H, W)
    noise: torch.Tensor                  # (B, C, H, W) N(f), [0, 1] scale, variance
    sigma_identity: torch.Tensor         # (B,)
    sigma_pool: dict[int, torch.Tensor]  # s -> (B,)


@dataclass
class Calibration:
    model_id: str
    snr_db: list[float]                  # ascending
    h: torch.Tensor                      # (S, C, H, W)
    noise: torch.Tensor                  # (S, C, H, W)
    sigma_identity: torch.Tensor         # (S,)
    sigma_pool: dict[int, torch.Tensor] = field(default_factory=dict)  # s -> (S,)
    meta: dict[str, Any] = field(default_factory=dict)   # data, split, n_images, seed, channel, jscc …
    source: str = ""                     # where it was loaded from (for messages)
    _sized: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        S = len(self.snr_db)
        if S < 1 or any(b <= a for a, b in zip(self.snr_db, self.snr_db[1:])):
            raise CheckpointError(f"calibration SNRs must be ≥ 1 strictly increasing values, got {self.snr_db}")
        if self.h.dim() != 4 or self.h.shape[0] != S or self.noise.shape != self.h.shape:
            raise CheckpointError(f"calibration {self.source or ''}: h {tuple(self.h.shape)} and noise "
                                  f"{tuple(self.noise.shape)} must both be (S={S}, C, H, W); the file is damaged")
        if self.sigma_identity.shape != (S,) or any(v.shape != (S,) for v in self.sigma_pool.values()):
            raise CheckpointError(f"calibration {self.source or ''}: σ tables must have one value per SNR ({S})")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.h.shape[1:])  # type: ignore[return-value]

    def for_shape(self, shape: Sequence[int]) -> "Calibration":
        """This calibration for (C, H, W) images: itself at its own shape, else h and N resampled
        over normalised frequency (module doc, "Another size"); cached per shape."""
        c, h, w = (int(v) for v in shape)
        if (c, h, w) == self.image_shape:
            return self
        if c != self.image_shape[0]:
            raise InputError(f"{self.describe()} is for {self.image_shape[0]}-channel images, not {c}: "
                             f"calibrate the JSCC on images with {c} channels")
        if min(h, w) < 1:
            raise InputError(f"image size {h}×{w} is empty")
        if (h, w) not in self._sized:
            rs = lambda t: resample_frequency(t, h, w)
            self._sized[(h, w)] = Calibration(
                model_id=self.model_id, snr_db=list(self.snr_db), h=rs(self.h).clamp(0.0, 1.0),
                noise=rs(self.noise).clamp_min(0.0), sigma_identity=self.sigma_identity.clone(),
                sigma_pool={k: v.clone() for k, v in self.sigma_pool.items()},
                meta={**self.meta, "resampled_from": list(self.image_shape)},
                source=f"{self.source or '(in memory)'} resampled to {h}×{w}")
        return self._sized[(h, w)]

    def describe(self) -> str:
        return f"calibration {self.source or '(in memory)'} for JSCC {self.model_id!r}"

    def check_model(self, model_id: str) -> None:
        """Refuse to serve a JSCC model other than the one this was fitted for."""
        if str(model_id) != self.model_id:
            raise CheckpointError(f"{self.describe()} does not belong to JSCC model {model_id!r}: "
                                  f"a calibration only describes the model it was fitted on; run "
                                  f"`sing calibrate --jscc <that model> --out <dir>` and use that file")

    def at(self, snr_db, device: torch.device | str = "cpu", batch: int | None = None) -> CalibrationPoint:
        """Interpolate (linear in dB) at per-image SNRs; SNRs outside the range are clamped with a
        warning naming the range."""
        s = torch.as_tensor(snr_db, dtype=torch.float64).flatten().cpu()
        if batch is not None and s.numel() == 1:
            s = s.expand(batch).clone()
        if batch is not None and s.numel() != batch:
            raise InputError(f"need one SNR per image: got {s.numel()} for a batch of {batch}")
        if not torch.isfinite(s).all():
            raise InputError("SNR contains NaN or Inf")
        lo, hi = self.snr_db[0], self.snr_db[-1]
        out = (s < lo - 1e-9) | (s > hi + 1e-9)
        if out.any():
            bad = sorted({round(float(v), 2) for v in s[out]})
            warnings.warn(f"SNR {bad} dB outside the calibrated range [{lo:g}, {hi:g}] dB of "
                          f"{self.describe()}: clamped to the range (calibrate more SNRs to cover it)",
                          UserWarning, stacklevel=2)
        s = s.clamp(lo, hi)
        grid = torch.tensor(self.snr_db, dtype=torch.float64)
        if len(grid) == 1:
            i0 = i1 = torch.zeros(len(s), dtype=torch.long)
            w = torch.zeros(len(s), dtype=torch.float64)
        else:
            i1 = torch.searchsorted(grid, s).clamp(1, len(grid) - 1)
            i0 = i1 - 1
            w = (s - grid[i0]) / (grid[i1] - grid[i0])
        lerp = lambda t: _lerp(t, i0, i1, w).to(device)
        return CalibrationPoint(snr_db=s.float().to(device), h=lerp(self.h), noise=lerp(self.noise),
                                sigma_identity=lerp(self.sigma_identity),
                                sigma_pool={k: lerp(v) for k, v in self.sigma_pool.items()})

    # -- files -----------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        c, hh, ww = self.image_shape
        return {"kind": KIND, "version": VERSION, "model_id": self.model_id, "snr_db": list(self.snr_db),
                "channels": c, "image_size": [hh, ww], "pool_factors": sorted(self.sigma_pool),
                "sigma_identity": [round(float(v), 6) for v in self.sigma_identity],
                "sigma_pool": {str(k): [round(float(v), 6) for v in t] for k, t in self.sigma_pool.items()},
                "mean_h": [round(float(v), 4) for v in self.h.mean(dim=(1, 2, 3))],
                "meta": self.meta}

    def save(self, directory: str | Path) -> Path:
        tensors = {"h": self.h.float(), "noise": self.noise.float(), "sigma_identity": self.sigma_identity.float(),
                   "snr_db": torch.tensor(self.snr_db, dtype=torch.float32),
                   **{f"sigma_pool.{k}": v.float() for k, v in self.sigma_pool.items()}}
        return save_model(directory, tensors, self.config(), card=self.card())

    def card(self) -> str:
        m = self.meta
        rows = "\n".join(f"| {s:g} | {float(si):.4f} | "
                         + " | ".join(f"{float(self.sigma_pool[k][i]):.4f}" for k in sorted(self.sigma_pool))
                         + f" | {float(self.h[i].mean()):.3f} |"
                         for i, (s, si) in enumerate(zip(self.snr_db, self.sigma_identity)))
        pools = " | ".join(f"σ avgpool-{k}" for k in sorted(self.sigma_pool))
        seps = "---|" * len(self.sigma_pool)
        return (f"# SING-Zero calibration\n\nLinear (LMMSE, DCT-domain) fit of the degradation of JSCC "
                f"model `{self.model_id}` (docs/ALGORITHMS.md §4), images {self.image_shape}, "
                f"{m.get('n_images', '?')} images of `{m.get('data', '?')}`/{m.get('split', '?')}, channel "
                f"{m.get('channel', 'awgn')}, seed {m.get('seed', '?')}.\n\nCommand: `{m.get('command', '')}`\n\n"
                f"σ on the [0, 1] image scale.\n\n| SNR (dB) | σ identity | {pools} | mean h |\n"
                f"|---|---|{seps}---|\n{rows}\n")


def _axis_weights(n_from: int, n_to: int) -> torch.Tensor:
    """(n_to, n_from) linear-interpolation matrix taking an n_from-point DCT axis to n_to points at
    the same frequency: coefficient k' of n_to sits at k'·n_from/n_to of n_from (module doc)."""
    pos = (torch.arange(n_to, dtype=torch.float64) * (n_from / n_to)).clamp(max=n_from - 1)
    i0 = pos.floor().long().clamp(max=n_from - 1)
    i1 = (i0 + 1).clamp(max=n_from - 1)
    f = pos - i0
    m = torch.zeros(n_to, n_from, dtype=torch.float64)
    m[torch.arange(n_to), i0] += 1 - f
    m[torch.arange(n_to), i1] += f
    return m


def resample_frequency(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A per-DCT-coefficient map (…, H0, W0) evaluated on an h×w DCT grid at equal normalised
    frequency (module doc, "Another size"); float32."""
    my = _axis_weights(t.shape[-2], int(h))
    mx = _axis_weights(t.shape[-1], int(w))
    return (my @ t.double() @ mx.T).float()


def _lerp(t: torch.Tensor, i0, i1, w) -> torch.Tensor:
    a, b = t[i0].double(), t[i1].double()
    w = w.view(-1, *([1] * (t.dim() - 1)))
    return ((1 - w) * a + w * b).float()


def load_calibration(path: str | Path, model_id: str | None = None) -> Calibration:
    """Load a calibration directory (or its config.json); with `model_id`, refuse one fitted for
    another JSCC model."""
    path = Path(path)
    if path.is_file() and path.name == "config.json":
        path = path.parent
    cfg = load_config(path, kind=KIND)
    if int(cfg.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path} is a calibration of version {cfg['version']}; this sing reads up "
                              f"to {VERSION}: update sing")
    st = load_state(path)
    try:
        cal = Calibration(model_id=str(cfg["model_id"]), snr_db=[float(v) for v in cfg["snr_db"]],
                          h=st["h"], noise=st["noise"], sigma_identity=st["sigma_identity"],
                          sigma_pool={int(k.split(".", 1)[1]): v for k, v in st.items()
                                      if k.startswith("sigma_pool.")},
                          meta=dict(cfg.get("meta", {})), source=str(path))
    except KeyError as e:
        raise CheckpointError(f"calibration {path} lacks {e}: the file is damaged or not a "
                              f"calibration; re-run `sing calibrate`") from e
    if model_id is not None:
        cal.check_model(model_id)
    return cal


@torch.no_grad()
def fit_calibration(jscc, images01: torch.Tensor, snr_db: Sequence[float], ids: Sequence[str] | None = None,
                    channel: str = "awgn", seed: int = 0, batch_size: int = 16,
                    pool_factors: Sequence[int] | None = None, progress: bool = True,
                    meta: dict[str, Any] | None = None) -> Calibration:
    """Send `images01` through encode → channel → decode at each SNR and fit the calibration.

    Channel noise per image comes from sing.channel.generator_for(seed, f"calibrate/{snr}/{id}").
    Use the train (or val) split: never the test split. The channel has perfect CSI; for Rayleigh
    the fit is over the per-image *effective* SNR spread, so prefer AWGN and look up the effective
    SNR at run time (the receiver does).
    """
    from ..channel import ChannelConfig, apply_channel, generator_for
    if not torch.is_tensor(images01) or images01.dim() != 4:
        raise InputError(f"calibration images must be (N, C, H, W) in [0, 1], got "
                         f"{tuple(getattr(images01, 'shape', ()))}")
    snrs = sorted(float(s) for s in snr_db)
    if len(set(snrs)) != len(snrs) or not snrs:
        raise InputError(f"give distinct calibration SNRs, got {list(snr_db)}")
    n, c, hh, ww = images01.shape
    ids = list(ids) if ids is not None else [str(i) for i in range(n)]
    if pool_factors is None:
        pool_factors = [s for s in (2, 4, 8) if hh % s == 0 and ww % s == 0]
    device = next(jscc.parameters()).device if hasattr(jscc, "parameters") else torch.device("cpu")
    bar = tqdm(total=len(snrs) * n, desc="calibrate", unit="img", disable=not progress)

    def pairs(snr: float):
        for i in range(0, n, batch_size):
            x = images01[i:i + batch_size].to(device)
            gens = [generator_for(seed, f"calibrate/{snr:g}/{iid}") for iid in ids[i:i + batch_size]]
            out = apply_channel(jscc.encode(x, snr), ChannelConfig(kind=channel, snr_db=snr), gens)
            yield x.cpu(), jscc.decode(out.y, out.snr_db.to(device), shape=(hh, ww)).float().cpu()
            bar.update(x.shape[0])

    fits = [fit_pairs(pairs(snr), pool_factors) for snr in snrs]
    bar.close()
    col = lambda key: [f[key] for f in fits]
    return Calibration(model_id=str(jscc.model_id), snr_db=snrs, h=torch.stack(col("h")),
                       noise=torch.stack(col("noise")), sigma_identity=torch.tensor(col("sigma_identity")),
                       sigma_pool={s: torch.tensor([p[s] for p in col("sigma_pool")]) for s in pool_factors},
                       meta={"n_images": n, "channel": channel, "seed": seed, **(meta or {})})
