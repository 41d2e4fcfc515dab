"""The receiver: DeepJSCC decoding followed by a restoration method (ARCHITECTURE.md).

`Receiver.restore(method, y, snr_db, ids, …)` is the one place that maps a method name to code;
`sing eval`, the worker and the demo all call it.

| method               | what runs                                                              |
|----------------------|------------------------------------------------------------------------|
| deepjscc             | x̂ = D(y, SNR)                                                          |
| deepjscc-perceptual  | the same with the perceptual (MSE + LPIPS) model (its own encoder too) |
| ddnm-avgpool         | DDNM+ with s×s average pooling on x̂ (Yilmaz et al., arXiv 2309.15889) |
| sing-zero            | SING-Zero: calibrated linear operator (spectral/identity/avgpool) + DDNM+ |
| sing-inn             | SING-INN: SNR-conditioned invertible degradation model + guided DDIM   |
| dps                  | DPS through the known JSCC encoder on the symbols y (DiffCom-style)    |
| digital-jpeg/-webp   | digital separation bound (codec at R = k·log2(1+SNR)); needs x: `bound` |

`dps` conditions on the received symbols, not on x̂, so it is reached through `restore` only.
The digital methods are bounds, not receivers: they need the original image, so `restore` refuses
them and `sing eval` calls `bound(method, x, k, snr_db)` instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from .errors import InputError

METHODS = ("deepjscc", "deepjscc-perceptual", "ddnm-avgpool", "sing-zero", "sing-inn", "dps",
           "digital-jpeg", "digital-webp")
DIFFUSION_METHODS = ("ddnm-avgpool", "sing-zero", "sing-inn", "dps")
BOUND_METHODS = ("digital-jpeg", "digital-webp")      # need the original image: `bound`, not `restore`
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

# Default restoration settings (ALGORITHMS §3–4): 50 DDIM steps, η = 0.85. SING-Zero and SING-INN
# default to the settings chosen on the natural val split (sim/results/tune-{zero,inn}-natural/
# choice.json): a warm start from x̂ at 0.1·T (6 UNet calls) with the σ_y scale that goes with it
# (SING-INN: deterministic steps after the warm start, η = 0, chosen there too);
# start = 1 with sigma_scale = 1 is plain DDNM+ from pure noise. The DDNM-avgpool baseline stays as
# published (from noise).
DEFAULTS: dict[str, dict[str, Any]] = {
    "ddnm-avgpool": {"operator": "avgpool-4", "steps": 50, "eta": 0.85, "sigma_scale": 1.0, "start": 1.0},
    "sing-zero": {"operator": "spectral", "steps": 50, "eta": 0.85, "sigma_scale": 1.5, "start": 0.1},
    "sing-inn": {"steps": 50, "eta": 0.0, "sigma_scale": 0.25, "grad_scale": 0.0, "inn_from": 0.3,
                 "start": 0.1},
    "dps": {"steps": 50, "eta": 0.85, "zeta": 1.0},
    "digital-jpeg": {"subsampling": "4:2:0", "header": "file"},
    "digital-webp": {"header": "file"},
}


def model_dir_for(dataset: str, bcr: str, perceptual: bool = False) -> Path:
    """The shipped JSCC model for a data set (mismatch sets use the other domain's model)."""
    domain = "fmnist32" if dataset in ("fmnist", "natural-gray32") else "natural64"
    d = MODELS_DIR / f"jscc-{domain}-bcr{bcr.replace('/', '_')}{'-perceptual' if perceptual else ''}"
    return d


def prior_dir_for(dataset: str) -> Path:
    return MODELS_DIR / ("prior-fmnist-32" if dataset in ("fmnist", "natural-gray32") else "prior-natural-64")


@dataclass
class Receiver:
    """Holds the decoder(s) and whatever the restoration methods need; stateless per call."""

    jscc: Any                                   # DeepJSCC, or dict model_id -> DeepJSCC
    prior: Any = None                           # sing.prior.DiffusionPrior
    calibration: Any = None                     # sing.zero Calibration, or dict model_id -> Calibration
    inn: Any = None                             # sing.inn model, or dict model_id -> model
    defaults: dict = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULTS.items()})

    def __post_init__(self):
        if not isinstance(self.jscc, dict):
            self.jscc = {self.jscc.model_id: self.jscc}
        if not self.jscc:
            raise InputError("a Receiver needs at least one DeepJSCC model")

    # -- what is available -----------------------------------------------------------------
    def model_ids(self) -> list[str]:
        return list(self.jscc)

    def methods(self) -> list[str]:
        m = ["deepjscc"]
        if self.prior is not None:
            m.append("ddnm-avgpool")
            m.append("dps")
            if self.calibration is not None:
                m.append("sing-zero")
            if self.inn is not None:
                m.append("sing-inn")
        return m

    @staticmethod
    def _for_model(obj, model_id: str | None, what: str):
        """A per-model part (calibration, INN): one object, or a dict keyed by JSCC model id."""
        if not isinstance(obj, dict):
            return obj
        return obj.get(model_id)

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
    def decode(self, y: torch.Tensor, snr_db, model_id: str | None = None) -> torch.Tensor:
        m = self.model(model_id)
        dev = next(m.parameters()).device
        return m.decode(y.to(dev), torch.as_tensor(snr_db, dtype=torch.float32, device=dev)).float()

    def restore(self, method: str, y: torch.Tensor, snr_db, ids: Sequence[str], seed: int = 0,
                model_id: str | None = None, progress: bool = False, **params) -> torch.Tensor:
        """Decode received symbols y (B, k) and restore with `method`; images (B, C, H, W) in [0, 1]."""
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        snr = torch.as_tensor(snr_db, dtype=torch.float32)
        if snr.dim() == 0:
            snr = snr.expand(y.shape[0]).clone()
        if len(ids) != y.shape[0]:
            raise InputError(f"need one id per image: {len(ids)} ids for {y.shape[0]} images")
        if method in BOUND_METHODS:
            raise InputError(f"{method!r} is the digital separation bound, not a receiver: it needs the "
                             f"original image; call sing.methods.bound(method, x, k, snr_db) (sing eval does)")
        if method == "dps":
            return self._dps(y, snr, ids, seed=seed, progress=progress, model_id=model_id, **params)
        x_hat = self.decode(y, snr, model_id)
        if method in ("deepjscc", "deepjscc-perceptual"):
            return x_hat
        return self.restore_from(method, x_hat, snr, ids, seed=seed, progress=progress,
                                 model_id=self.model(model_id).model_id, **params)

    def restore_from(self, method: str, x_hat: torch.Tensor, snr_db: torch.Tensor, ids: Sequence[str],
                     seed: int = 0, progress: bool = False, model_id: str | None = None,
                     **params) -> torch.Tensor:
        """Restoration step alone, from the DeepJSCC output x̂."""
        if method == "dps":
            raise InputError("dps conditions on the received symbols, not on x̂: call "
                             "Receiver.restore('dps', y, snr_db, ids, …)")
        if method not in DIFFUSION_METHODS:
            raise InputError(f"{method!r} is not a restoration method; choose one of {', '.join(DIFFUSION_METHODS)}")
        if method not in self.methods():
            need = {"sing-zero": "a prior and a calibration", "sing-inn": "a prior and an INN",
                    "ddnm-avgpool": "a prior", "dps": "a prior"}[method]
            raise InputError(f"method {method!r} needs {need}; this receiver offers: {', '.join(self.methods())}")
        p = dict(self.defaults.get(method, {}))
        unknown = set(params) - set(p) - {"travel"}
        if unknown:
            raise InputError(f"unknown parameters for {method}: {sorted(unknown)}; allowed: {sorted(p)} + travel")
        p.update(params)
        from .channel import generator_for
        gens = [generator_for(seed, f"restore:{i}") for i in ids]
        cal = self._for_model(self.calibration, model_id, "calibration")
        inn = self._for_model(self.inn, model_id, "INN")
        if method == "sing-zero" and cal is None:
            raise InputError(f"no SING-Zero calibration for model {model_id!r}: run `sing calibrate --jscc "
                             f"<model dir> --out <model dir>/calibration`")
        if method == "sing-inn" and inn is None:
            raise InputError(f"no SING-INN model for JSCC {model_id!r}: train one with `sing train-inn`")
        dev = self.prior.device
        if method in ("sing-zero", "ddnm-avgpool"):
            from .zero import sing_zero
            out = sing_zero(self.prior, cal, x_hat.to(dev), snr_db.to(dev),
                            operator=p["operator"], sigma_scale=p["sigma_scale"], steps=p["steps"],
                            eta=p["eta"], generators=gens, travel=p.get("travel"), progress=progress,
                            model_id=model_id, start=p["start"])
        elif method == "sing-inn":
            from .inn import sing_inn
            out = sing_inn(self.prior, inn, x_hat.to(dev), snr_db.to(dev), steps=p["steps"],
                           eta=p["eta"], generators=gens, progress=progress, sigma_scale=p["sigma_scale"],
                           grad_scale=p["grad_scale"], inn_from=p["inn_from"], model_id=model_id,
                           start=p["start"])
        else:  # pragma: no cover - listed for completeness, refused above
            raise InputError(f"{method} is not implemented yet")
        return out.float().clamp(0, 1).cpu()

    def _dps(self, y: torch.Tensor, snr: torch.Tensor, ids: Sequence[str], seed: int = 0,
             progress: bool = False, model_id: str | None = None, **params) -> torch.Tensor:
        """DPS through the known JSCC (sing.baselines.dps) from the received symbols y (B, k).
        `encoder_snr_db`: the transmitter's nominal SNR (default: the receiver's snr)."""
        if "dps" not in self.methods():
            raise InputError(f"method 'dps' needs a prior; this receiver offers: {', '.join(self.methods())}")
        p = dict(self.defaults.get("dps", {}))
        unknown = set(params) - set(p) - {"encoder_snr_db"}
        if unknown:
            raise InputError(f"unknown parameters for dps: {sorted(unknown)}; allowed: {sorted(p)} + encoder_snr_db")
        p.update(params)
        from .baselines import dps_restore
        from .channel import generator_for
        gens = [generator_for(seed, f"restore:{i}") for i in ids]
        dev = self.prior.device
        out = dps_restore(self.prior, self.model(model_id), y.to(dev), snr, steps=p["steps"], eta=p["eta"],
                          zeta=p["zeta"], generators=gens, progress=progress,
                          encoder_snr_db=p.get("encoder_snr_db"))
        return out.float().clamp(0, 1).cpu()


def bound(method: str, x01: torch.Tensor, k: int, snr_db, **params) -> tuple[torch.Tensor, list[dict]]:
    """The digital separation bound (sing.baselines.digital) for the ORIGINAL images x01 at k channel
    uses and SNR snr_db (float or (B,)): (images in [0, 1], per-image info). Not a receiver."""
    if method not in BOUND_METHODS:
        raise InputError(f"{method!r} is not a bound; choose one of {', '.join(BOUND_METHODS)}")
    p = dict(DEFAULTS[method])
    unknown = set(params) - set(p) - {"search"}
    if unknown:
        raise InputError(f"unknown parameters for {method}: {sorted(unknown)}; allowed: {sorted(p)} + search")
    p.update(params)
    from .baselines import digital_separation
    return digital_separation(x01, k, snr_db, codec=method.split("-", 1)[1], **p)


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
    from .errors import CheckpointError
    from .jscc import load_jscc
    models = {}
    for d in jscc_dirs:
        m = load_jscc(d, device)
        models[m.model_id] = m
    ids = list(models)

    def paths(arg) -> list[Path]:
        if arg is None:
            return []
        if isinstance(arg, (str, Path)):
            return [Path(arg)]
        return [Path(a) for a in arg]

    def keyed(objs: list[tuple[Path, str, Any]], what: str):
        out: dict[str, Any] = {}
        for path, mid, obj in objs:
            if not mid and len(ids) == 1:
                mid = ids[0]
            if not mid:
                raise CheckpointError(f"{what} {path} does not record which JSCC model it belongs to; "
                                      f"with several models ({', '.join(ids)}) it cannot be matched")
            if mid not in models:
                raise CheckpointError(f"{what} {path} belongs to JSCC model {mid!r}, which is not loaded "
                                      f"(loaded: {', '.join(ids)}); pass that model's --jscc directory "
                                      f"or the {what} of a loaded one")
            if mid in out:
                raise InputError(f"two {what}s for JSCC model {mid!r}: {out[mid][0]} and {path}; "
                                 f"pass one")
            out[mid] = (path, obj)
        if not out:
            return None
        if len(ids) == 1:
            return next(iter(out.values()))[1]
        return {mid: obj for mid, (_, obj) in out.items()}

    prior = cal = inn = None
    if prior_dir is not None:
        from .prior import load_prior
        prior = load_prior(prior_dir, device=device).set_autocast(autocast)
    cal_paths = paths(calibration)
    if cal_paths:
        from .zero import load_calibration
        loaded = []
        for c in cal_paths:
            obj = load_calibration(c, model_id=ids[0] if len(ids) == 1 else None)
            loaded.append((c, obj.model_id, obj))
        cal = keyed(loaded, "calibration")
    inn_paths = paths(inn_dir)
    if inn_paths:
        from .inn import load_inn
        loaded = []
        for c in inn_paths:
            obj = load_inn(c, device=device, jscc_model_id=ids[0] if len(ids) == 1 else None)
            loaded.append((c, obj.jscc_model_id, obj))
        inn = keyed(loaded, "INN")
    return Receiver(models, prior=prior, calibration=cal, inn=inn)
