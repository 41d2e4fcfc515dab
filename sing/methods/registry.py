# SPDX-License-Identifier: GPL-3.0-or-later
"""Every restoration method, declared once: `REGISTRY` below. Adding a method = one `Method` entry
here (its parameters are its entry point's keyword arguments; the entry point lives elsewhere in
sing/), then `sing methods --markdown > docs/methods.md`; tests/test_methods_registry.py says what
else is out of step (the GRC receiver block's list).

Derived from it: `sing eval` (--method choices, parameter flags), sim/sweep.py, the wire validation
(`sing.worker.protocol.PARAMS`, `check_params`), the worker's budget (`cost_of`, `--max-cost`), the
methods a `Receiver` offers (`needs` against its loaded parts) and docs/methods.md.

Cost of one request (one image): network passes, one UNet forward = 1; the DeepJSCC decoder counts 1,
a backward pass through the UNet 2 (DPS). A chain of S DDIM steps ("leading" timesteps of T, as
`DiffusionPrior.ddim_timesteps`) begun at start·T runs the n steps with t ≤ start·T; time travel
(l, r) adds (r − 1)·l steps at each of (n − 1) // l jump points (`sing.zero.ddnm.travel_schedule`).
INN and JSCC-encoder passes are small next to the UNet and not counted. Standard library only: the
broker and the radio host use this without torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..errors import InputError

DEFAULT_MAX_COST = 2000   # `sing worker --max-cost`: 13× the dearest shipped setting (dps, 150);
#                           a 1000-step chain from noise (1001) passes, 1000 steps + travel [1, 100] do not
PARTS = {"prior": "a diffusion prior (--prior DIR)",
         "calibration": "a SING-Zero calibration (`sing calibrate --jscc DIR --out DIR/calibration`)",
         "inn": "a SING-INN model (`sing train-inn`; found as <jscc dir>-inn)"}


@dataclass(frozen=True)
class Param:
    """One method parameter: `kind` int | float | str | "pair" ([int, int]); `default` None = unset
    unless given (the entry point's own default applies); numbers lie in [low, high], or in
    (low, high] with `low_open`; strings are one of `choices`."""
    name: str
    kind: Any
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    low_open: bool = False
    cli: bool = True                       # a `sing eval` flag (encoder_snr_db is set by eval itself)

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        kind = {int: "an int", float: "a number", "pair": "a pair [int, int]"}[self.kind]
        return f"{kind} in {'(' if self.low_open else '['}{self.low:.10g}, {self.high:.10g}]"

    def check(self, v) -> Any:
        """v as this parameter's type, or InputError saying what it must be (JSON booleans are
        not numbers; ints are accepted as floats)."""
        if self.choices:
            ok = isinstance(v, str) and v in self.choices
        elif self.kind == "pair":
            ok = (isinstance(v, (list, tuple)) and len(v) == 2
                  and all(_is_int(a) and self.low <= a <= self.high for a in v))
        else:
            num = _is_int(v) or (self.kind is float and isinstance(v, float) and v == v)
            ok = num and (self.low < v if self.low_open else self.low <= v) and v <= self.high
        if not ok:
            raise InputError(f"parameter {self.name} must be {self.describe()}, got {str(v)[:32]}")
        return tuple(int(a) for a in v) if self.kind == "pair" else (v if self.choices else self.kind(v))


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class Cost:
    """Network passes one request costs (module doc); `total` is what the budget compares."""
    decoder: int = 0
    unet_forward: int = 0
    unet_backward: int = 0

    @property
    def total(self) -> int:
        return self.decoder + self.unet_forward + 2 * self.unet_backward


@dataclass
class Inputs:
    """What a method's `run` gets (sing.methods.receiver builds it; tensors on the prior's device)."""
    prior: Any = None
    jscc: Any = None                       # the DeepJSCC model (dps encodes through it)
    calibration: Any = None
    inn: Any = None
    x_hat: Any = None                      # decoded images (B, C, H, W) in [0, 1]  (input "x_hat")
    y: Any = None                          # received symbols (B, k)                 (input "symbols")
    x: Any = None                          # original images, k                      (input "original")
    k: int = 0
    snr_db: Any = None
    generators: list = field(default_factory=list)
    progress: bool = False
    model_id: str | None = None
    shape: tuple[int, int] | None = None   # the sent images' (H, W) (input "symbols"; None: native)


@dataclass(frozen=True)
class Method:
    """One restoration method. `input`: "x_hat" (restores the decoder's output), "symbols" (works
    on the received symbols) or "original" (a bound: needs the original image, never served).
    `needs`: Receiver parts it cannot run without; `uses`: parts loaded for it when present.
    `run(inputs, params)`: None = the decoder's output as is. `jscc`: which shipped DeepJSCC model
    (sing.paths.model_dir_for) it goes with. `served`: offered by workers."""
    name: str
    summary: str
    input: str = "x_hat"
    needs: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    cost: Callable[[dict, int], Cost] = lambda p, T: Cost(decoder=1)
    cost_doc: str = "1 decoder pass"
    run: Callable[[Inputs, dict], Any] | None = None
    jscc: str = "mse"
    served: bool = True

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params if p.default is not None}

    def resolve(self, params: dict | None = None) -> dict:
        """The defaults updated with `params`, each checked (InputError names the bad one)."""
        spec = {p.name: p for p in self.params}
        unknown = sorted(set(params or {}) - set(spec))
        if unknown:
            raise InputError(f"unknown parameters for {self.name}: {unknown}; allowed: {sorted(spec)}")
        return {**self.defaults(), **{k: spec[k].check(v) for k, v in (params or {}).items()}}

    def evaluations(self, params: dict | None = None, T: int = 1000) -> Cost:
        return self.cost(self.resolve(params), T)


# ---- costs ---------------------------------------------------------------------------------------
def chain_steps(steps: int, start: float = 1.0, travel=None, T: int = 1000) -> int:
    """UNet passes of a DDIM chain of `steps` begun at start·T with time travel (l, r) (module doc).

    The closed form of `sing.prior.ddim.unet_evals`, which counts the sampler's own schedule: kept
    here without torch so that the broker can price a request; a property test holds them equal."""
    if start >= 1.0:
        n = steps
    else:
        n = max(1, sum(1 for i in range(steps) if i * (T // steps) <= start * T))
    if travel is None:
        return n
    l, r = travel
    if l >= n:
        raise InputError(f"time-travel length l = {l} must be smaller than the {n} steps the chain "
                         f"runs (steps = {steps}, start = {start:g})")
    return n + (n - 1) // l * (r - 1) * l


def _chain_cost(p: dict, T: int) -> Cost:
    return Cost(decoder=1, unet_forward=chain_steps(p["steps"], p["start"], p.get("travel"), T))


# ---- how each method runs: its entry point (elsewhere in sing/, imported when first used), called
# with the resolved parameters as keyword arguments (a parameter's name is the entry point's)
def _run_ddnm(i: Inputs, p: dict):
    from ..zero import sing_zero
    return sing_zero(i.prior, i.calibration, i.x_hat, i.snr_db, generators=i.generators, progress=i.progress,
                     model_id=i.model_id, **p)


def _run_inn(i: Inputs, p: dict):
    from ..inn import sing_inn
    return sing_inn(i.prior, i.inn, i.x_hat, i.snr_db, generators=i.generators, progress=i.progress,
                    model_id=i.model_id, **p)


def _run_sdedit(i: Inputs, p: dict):
    from ..baselines import sdedit_restore
    return sdedit_restore(i.prior, i.x_hat, generators=i.generators, progress=i.progress, **p)


def _run_dps(i: Inputs, p: dict):
    from ..baselines import dps_restore
    return dps_restore(i.prior, i.jscc, i.y, i.snr_db, generators=i.generators, progress=i.progress,
                       shape=i.shape, **p)


def _run_digital(codec: str) -> Callable[[Inputs, dict], Any]:
    def run(i: Inputs, p: dict):
        from ..baselines import digital_separation
        return digital_separation(i.x, i.k, i.snr_db, codec=codec, **p)
    return run


# ---- the parameters (one declaration each; methods differ in defaults only) -----------------------
OPERATOR = Param("operator", str, choices=("spectral", "identity", "avgpool-2", "avgpool-4", "avgpool-8"),
                 help="linear operator A: spectral (calibrated), identity or s×s average pooling")
STEPS = Param("steps", int, 50, 1, 1000, help="DDIM steps")
ETA = Param("eta", float, 0.85, 0.0, 1.0, help="η: fresh-noise fraction of each DDIM step")
SIGMA = Param("sigma_scale", float, 1.0, 0.0, 100.0, help="scale of the calibrated σ_y (sing-inn: σ_c)")
START = Param("start", float, 1.0, 0.0, 1.0, low_open=True,
              help="begin the chain at start·T from x̂ itself (warm start; 1 = from pure noise)")
TRAVEL = Param("travel", "pair", None, 1, 100, help="time travel (length l, repeat r), RePaint schedule")
SEED = Param("seed", int, None, 0, 2**31 - 1, cli=False, help="seed of the per-image noise (every method)")
DIGITAL = (Param("header", str, "file", choices=("file", "stripped"),
                 help="count the whole file or only what a receiver cannot infer"),
           Param("search", str, None, choices=("binary", "exhaustive"), cli=False, help="codec quality search"))
CHAIN = "1 decoder + n UNet passes (n: steps run after the warm start, plus time travel)"

REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("deepjscc", "x̂ = D(y, SNR): the DeepJSCC decoder alone"),
    Method("deepjscc-perceptual", "the same with the perceptual (MSE + LPIPS) model (its own encoder too)",
           jscc="perceptual", served=False),
    Method("ddnm-avgpool", "DDNM+ with s×s average pooling on x̂ (Yilmaz et al., arXiv 2309.15889)",
           needs=("prior",), uses=("calibration",), run=_run_ddnm, cost=_chain_cost, cost_doc=CHAIN,
           params=(replace(OPERATOR, default="avgpool-4"), STEPS, ETA, SIGMA, START, TRAVEL)),
    Method("sing-zero", "SING-Zero: calibrated linear operator (spectral/identity/avgpool) + DDNM+",
           needs=("prior", "calibration"), run=_run_ddnm, cost=_chain_cost, cost_doc=CHAIN,
           params=(replace(OPERATOR, default="spectral"), STEPS, ETA, replace(SIGMA, default=1.5),
                   replace(START, default=0.1), TRAVEL)),
    Method("sing-inn", "SING-INN: SNR-conditioned invertible degradation model + guided DDIM",
           needs=("prior", "inn"), run=_run_inn, cost=_chain_cost, cost_doc=CHAIN,
           params=(STEPS, replace(ETA, default=0.0), replace(SIGMA, default=0.25),
                   Param("grad_scale", float, 0.0, 0.0, 100.0, help="INDIGO+ gradient term weight"),
                   Param("inn_from", float, 0.3, 0.0, 1.0,
                         help="INN guidance for t < inn_from·T, Haar guidance before (1 = INN throughout)"),
                   replace(START, default=0.1))),
    Method("sdedit", "SDEdit: the prior alone from x̂ noised to start·T (start < 1), no data term (SING-Zero's chain "
           "without its correction; Meng et al., arXiv 2108.01073)",
           needs=("prior",), run=_run_sdedit, cost=_chain_cost, cost_doc=CHAIN,
           params=(STEPS, ETA, replace(START, default=0.1))),
    Method("dps", "DPS through the known JSCC encoder on the symbols y (DiffCom-style)", input="symbols",
           needs=("prior",), run=_run_dps, cost_doc="steps × (UNet forward + backward) = 3 × steps",
           cost=lambda p, T: Cost(unet_forward=p["steps"], unet_backward=p["steps"]),
           params=(STEPS, ETA, Param("zeta", float, 1.0, 0.0, 1000.0, help="DPS step size ζ"),
                   Param("encoder_snr_db", float, None, -30.0, 60.0, cli=False,
                         help="the transmitter's nominal SNR the data term encodes at (default: the receiver's)"))),
    Method("digital-jpeg", "digital separation bound: JPEG at R = k·log2(1+SNR) (needs x: a bound)",
           input="original", run=_run_digital("jpeg"), served=False, cost=lambda p, T: Cost(),
           cost_doc="none (a codec)", params=(Param("subsampling", str, "4:2:0", help="JPEG chroma subsampling",
                                                    choices=("4:2:0", "4:2:2", "4:4:4", "best")), *DIGITAL)),
    Method("digital-webp", "digital separation bound: WebP at R = k·log2(1+SNR) (needs x: a bound)",
           input="original", run=_run_digital("webp"), served=False, cost=lambda p, T: Cost(),
           cost_doc="none (a codec)", params=DIGITAL),
)}
METHODS = tuple(REGISTRY)
SERVED = tuple(n for n, m in REGISTRY.items() if m.served)


def get(name: str) -> Method:
    if name not in REGISTRY:
        raise InputError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return REGISTRY[name]


def cost_of(method: str, params: dict | None = None, T: int = 1000) -> int:
    """Network passes (UNet-forward units, module doc) one request of `method` with `params` (a
    request header's `params`, `seed` allowed) costs; InputError for an unknown method or a bad
    parameter. Pure arithmetic: microseconds."""
    return get(method).evaluations({k: v for k, v in (params or {}).items() if k != "seed"}, T).total


def all_params() -> dict[str, Param]:
    """Every parameter name once (shared names are declared once, so their bounds agree)."""
    out: dict[str, Param] = {}
    for m in REGISTRY.values():
        out.update({p.name: p for p in m.params if p.name not in out})
    return out


def markdown() -> str:
    """docs/methods.md (`sing methods --markdown`)."""
    rows = ["# Methods", "", "Generated from `sing/methods/registry.py` by `sing methods --markdown > "
            "docs/methods.md`; do not edit by hand (a test compares). Cost: network passes per request "
            f"(UNet forward = 1, module doc there); `sing worker --max-cost` refuses more (default "
            f"{DEFAULT_MAX_COST}) with `too_expensive`.", "",
            "| method | what runs | input | needs | parameters (default) | cost per request (at defaults) |",
            "|---|---|---|---|---|---|"]
    for m in REGISTRY.values():
        prm = "<br>".join(f"`{p.name}` {p.describe()}" + (f" ({p.default})" if p.default is not None else "")
                          for p in m.params) or "—"
        needs = ", ".join(m.needs + tuple(f"{u} if present" for u in m.uses)) or "—"
        rows.append(f"| `{m.name}`{'' if m.served else ' (not served)'} | {m.summary} | {m.input} | {needs} "
                    f"| {prm} | {m.cost_doc} ({cost_of(m.name)}) |")
    rows += ["", "Every served method also takes `seed` (" + SEED.describe() + ") on the wire.", ""]
    rows += [f"- `{k}`: {v}" for k, v in PARTS.items()]
    return "\n".join(rows) + "\n"
