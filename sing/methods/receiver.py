# SPDX-License-Identifier: GPL-3.0-or-later
"""The receiver: DeepJSCC decoding followed by a restoration method from the registry.

`Receiver.restore(method, y, snr_db, ids, …)` decodes and runs `method` as sing/methods/registry.py
declares it (what each method is, its parameters and how it runs live there, once); `sing eval`,
the worker and the demo all call it. `dps` conditions on the received symbols, not on x̂, so it is
reached through `restore` only. The digital methods are bounds, not receivers: they need the
original image, so `restore` refuses them and `sing eval` calls `bound(method, x, k, snr_db)`.

Image size (docs/ALGORITHMS.md §2, "Any image size"): `shape=(H, W)` decodes the symbols of an
H×W image (the transmitter's metadata and the OFDM header carry it; None: the model's native size).
A method built on the prior then restores x̂ at H×W: when H×W differs from the prior's own size, the
method gets the prior through `prior_at` (sing.prior.tiles.at_size: the UNet on the whole image up to
a size bound, whole-image tiles with overlap above it; bounded memory). The per-size parts carry
over (docs/ALGORITHMS.md §3–5): a spectral SING-Zero calibration is resampled over frequency, SING-INN
is convolutional, DPS encodes at the image's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..channel import snr_vector
from ..errors import InputError
from .registry import PARTS, REGISTRY, Inputs, Method, get


@dataclass
class Receiver:
    """Holds the decoder(s) and whatever the restoration methods need; stateless per call."""

    jscc: Any                                   # DeepJSCC, or dict model_id -> DeepJSCC
    prior: Any = None                           # sing.prior.DiffusionPrior
    calibration: Any = None                     # sing.zero Calibration, or dict model_id -> Calibration
    inn: Any = None                             # sing.inn model, or dict model_id -> model

    def __post_init__(self):
        if not isinstance(self.jscc, dict):
            self.jscc = {self.jscc.model_id: self.jscc}
        if not self.jscc:
            raise InputError("a Receiver needs at least one DeepJSCC model")

    # -- what is available -----------------------------------------------------------------
    def model_ids(self) -> list[str]:
        return list(self.jscc)

    def methods(self) -> list[str]:
        """The served methods whose needed parts (registry `needs`) this receiver holds."""
        return [n for n, m in REGISTRY.items()
                if m.served and all(getattr(self, part) is not None for part in m.needs)]

    def _check_offered(self, m: Method) -> None:
        if m.name not in self.methods():
            raise InputError(f"method {m.name!r} needs {' and '.join(PARTS[p] for p in m.needs)}; this "
                             f"receiver offers: {', '.join(self.methods())}")

    def parts_for(self, model_id: str | None) -> dict[str, Any]:
        """A JSCC model's own parts {calibration, inn} (each held as one object, or a dict keyed by model id)."""
        held = {part: getattr(self, part) for part in ("calibration", "inn")}
        return {part: v.get(model_id) if isinstance(v, dict) else v for part, v in held.items()}

    def model(self, model_id: str | None = None):
        if model_id is None:
            if len(self.jscc) == 1:
                return next(iter(self.jscc.values()))
            raise InputError(f"several JSCC models are loaded; say which: {', '.join(self.jscc)}")
        if model_id not in self.jscc:
            raise InputError(f"unknown model id {model_id!r}; this receiver has: {', '.join(self.jscc)}")
        return self.jscc[model_id]

    # -- the work --------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, y: torch.Tensor, snr_db, model_id: str | None = None,
               shape: tuple[int, int] | None = None) -> torch.Tensor:
        """Symbols (B, k) of H×W images (`shape`; None: the model's size) → x̂ (B, C, H, W)."""
        m = self.model(model_id)
        dev = next(m.parameters()).device
        return m.decode(y.to(dev), torch.as_tensor(snr_db, dtype=torch.float32, device=dev),
                        shape=shape).float()

    def prior_at(self, h: int, w: int):
        """The prior for H×W images: the loaded prior at its own size, else whole-image or tiled
        (sing.prior.tiles.at_size; module doc)."""
        if self.prior is None:
            return None
        from ..prior.tiles import at_size
        return at_size(self.prior, (int(h), int(w)))

    def size_factor(self, method: str, shape: tuple[int, int] | None) -> int:
        """How many times a request of `method` on an H×W image costs what it costs at the prior's
        size: the UNet work per image of `prior_at(H, W)` in passes at the prior's own size
        (`native_passes`: whole-image ⌈pixels/native pixels⌉, tiled tiles × ⌈tile²/native²⌉), for
        a method that needs the prior (1 otherwise, or at the prior's own size). The worker's budget
        multiplies by it."""
        m = get(method)
        if shape is None or self.prior is None or "prior" not in m.needs:
            return 1
        return int(getattr(self.prior_at(*shape), "native_passes", 1))

    def restore(self, method: str, y: torch.Tensor, snr_db, ids: Sequence[str], seed: int = 0,
                model_id: str | None = None, progress: bool = False,
                shape: tuple[int, int] | None = None, **params) -> torch.Tensor:
        """Decode received symbols y (B, k) of H×W images (`shape`, None: the model's size) and
        restore with `method`; images (B, C, H, W) in [0, 1]."""
        m = get(method)
        snr = snr_vector(snr_db, y.shape[0]).clone()
        if len(ids) != y.shape[0]:
            raise InputError(f"need one id per image: {len(ids)} ids for {y.shape[0]} images")
        if m.input == "original":
            raise InputError(f"{method!r} is the digital separation bound, not a receiver: it needs the "
                             f"original image; call sing.methods.bound(method, x, k, snr_db) (sing eval does)")
        if m.input == "symbols":
            self._check_offered(m)
            p = m.resolve(params)
            # the symbols go to the prior's device; the SNR stays as given (the sampler places it)
            return self._run(m, p, ids, seed, Inputs(y=y.to(self.prior.device), snr_db=snr,
                                                     jscc=self.model(model_id), shape=shape), progress, shape)
        x_hat = self.decode(y, snr, model_id, shape)
        if m.run is None:
            m.resolve(params)
            return x_hat
        return self.restore_from(method, x_hat, snr, ids, seed=seed, progress=progress,
                                 model_id=self.model(model_id).model_id, **params)

    def restore_from(self, method: str, x_hat: torch.Tensor, snr_db: torch.Tensor, ids: Sequence[str],
                     seed: int = 0, progress: bool = False, model_id: str | None = None,
                     **params) -> torch.Tensor:
        """Restoration step alone, from the DeepJSCC output x̂."""
        m = get(method)
        if m.input == "symbols":
            raise InputError(f"{method} conditions on the received symbols, not on x̂: call "
                             f"Receiver.restore({method!r}, y, snr_db, ids, …)")
        if m.input != "x_hat" or m.run is None:
            restorers = [n for n, r in REGISTRY.items() if r.input != "original" and r.run is not None]
            raise InputError(f"{method!r} is not a restoration method; choose one of {', '.join(restorers)}")
        self._check_offered(m)
        p = m.resolve(params)
        parts = self.parts_for(model_id)
        for part in m.needs:
            if part in parts and parts[part] is None:
                raise InputError(f"no {part} for JSCC model {model_id!r}: it needs {PARTS[part]}")
        dev = self.prior.device
        return self._run(m, p, ids, seed, Inputs(x_hat=x_hat.to(dev), snr_db=snr_db.to(dev),
                                                 model_id=model_id, **parts), progress,
                         tuple(x_hat.shape[2:]))

    def _run(self, m: Method, p: dict, ids: Sequence[str], seed: int, inputs: Inputs,
             progress: bool, shape: tuple[int, int] | None = None) -> torch.Tensor:
        from ..channel import generator_for
        inputs.prior, inputs.progress = self.prior if shape is None else self.prior_at(*shape), progress
        inputs.generators = [generator_for(seed, f"restore:{i}") for i in ids]
        return m.run(inputs, p).float().clamp(0, 1).cpu()


def bound(method: str, x01: torch.Tensor, k: int, snr_db, **params) -> tuple[torch.Tensor, list[dict]]:
    """The digital separation bound (sing.baselines.digital) for the ORIGINAL images x01 at k channel
    uses and SNR snr_db (float or (B,)): (images in [0, 1], per-image info). Not a receiver."""
    m = get(method)
    if m.input != "original":
        bounds = [n for n, r in REGISTRY.items() if r.input == "original"]
        raise InputError(f"{method!r} is not a bound; choose one of {', '.join(bounds)}")
    return m.run(Inputs(x=x01, k=k, snr_db=snr_db), m.resolve(params))


def load_receiver(jscc_dirs: Sequence[str | Path], prior_dir: str | Path | None = None,
                  calibration: str | Path | Sequence[str | Path] | None = None,
                  inn_dir: str | Path | Sequence[str | Path] | None = None,
                  device: str = "cpu", autocast: str | None = None) -> Receiver:
    """Build a Receiver from model directories (what `sing worker` and `sing eval` load).

    `autocast` ("bf16", "fp16" or None) runs the prior's UNet under torch.autocast
    (`DiffusionPrior.set_autocast`); None keeps the loaded dtype (fp16 on CUDA, fp32 on CPU).

    `calibration` and `inn_dir` are one directory or a list of them: each belongs to the JSCC model
    id recorded in its config (`model_id` / `jscc_model_id`) and is matched to the loaded model with
    that id (one whose model is not loaded is refused; two for one model are refused). With one JSCC
    model the Receiver gets the object itself (as before); with several, a dict model_id -> object
    holding the models that have one. An INN that records no JSCC id is accepted with one model only.
    """
    from ..errors import CheckpointError
    from ..jscc import load_jscc
    models = {m.model_id: m for m in (load_jscc(d, device) for d in jscc_dirs)}
    ids = list(models)
    only = ids[0] if len(ids) == 1 else None

    def keyed(arg, what: str, load, key: str):
        """Load each directory in `arg` with `load`, keyed by the JSCC model id that the object
        records in its attribute `key` (the docstring above)."""
        out: dict[str, Any] = {}
        for path in [] if arg is None else [Path(arg)] if isinstance(arg, (str, Path)) else map(Path, arg):
            obj = load(path)
            mid = getattr(obj, key) or only
            if not mid:
                raise CheckpointError(f"{what} {path} does not record which JSCC model it belongs to; "
                                      f"with several models ({', '.join(ids)}) it cannot be matched")
            if mid not in models:
                raise CheckpointError(f"{what} {path} belongs to JSCC model {mid!r}, which is not loaded "
                                      f"(loaded: {', '.join(ids)}); pass that model's --jscc directory "
                                      f"or the {what} of a loaded one")
            if mid in out:
                raise InputError(f"two {what}s for JSCC model {mid!r}: {out[mid][0]} and {path}; pass one")
            out[mid] = (path, obj)
        if not out:
            return None
        return next(iter(out.values()))[1] if only else {mid: obj for mid, (_, obj) in out.items()}

    def calibration_at(path):
        from ..zero import load_calibration
        return load_calibration(path, model_id=only)

    def inn_at(path):
        from ..inn import load_inn
        return load_inn(path, device=device, jscc_model_id=only)

    prior = None
    if prior_dir is not None:
        from ..prior import load_prior
        prior = load_prior(prior_dir, device=device).set_autocast(autocast)
    return Receiver(models, prior=prior, calibration=keyed(calibration, "calibration", calibration_at, "model_id"),
                    inn=keyed(inn_dir, "INN", inn_at, "jscc_model_id"))
