# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing train-inn`: fit SING-INN's invertible degradation model to a DeepJSCC (docs/ALGORITHMS.md §5).

Pairs are made on the fly: x (training crops) → E(x, snr) → AWGN at snr ~ U[snr_min, snr_max] per
image → D(y, snr) = x̂. With x, x̂ on diffusion scale (2·v − 1), g the L-level Haar low-pass and
h(x) the Haar detail coefficients of x (what f gives for d at initialisation):

    L(θ) = mean‖c_θ(x; snr) − g(x̂)‖²  +  λ_d · mean‖d_θ(x; snr) − h(x)‖²

      + λ_inv · mean‖f⁻¹(g(x̂), d_θ(x; snr); snr) − x‖²

The second term is the "small regulariser on d": it keeps f near the Haar transform on the null
part (λ_d = 0 switches it off). The third is an inverse-consistency term: it trains exactly the
operation the sampler performs (swap c for the observation, keep d, invert) with the true details,
and penalises f⁻¹ amplifying the part of g(x̂) that c cannot explain. Measured on a pilot
(Fashion-MNIST, 1000 steps, λ_inv = 0): with the true d, f⁻¹(g(x̂), d(x)) was 4 dB *worse* than the
plain Haar inverse at 0 dB although c fitted g(x̂) 20 % better: the forward fit alone makes f⁻¹
ill-conditioned (a learnt deblurring that amplifies the residual). At
initialisation c = g(x), so the first term starts at mean‖g(x) − g(x̂)‖², the error that a linear
Haar/average-pool observation model (DDNM-avgpool) assumes; history.json logs both ("baseline").

σ_c calibration (stored in config.json, used by the sampler as σ_y): on fixed validation images and
fixed noise, per SNR on a grid over the trained range and per channel, the RMS of c(x; snr) − g(x̂);
"std_haar" is the same for the untrained (pure Haar) f. Done at every checkpoint.

Processes: one by default; `--num-processes N` spawns N local CPU processes and `accelerate launch
-m sing.cli train-inn …` runs one per GPU/node (sing.distributed). Each process draws its own pairs
(data and SNR streams seeded by rank) from a global batch split evenly; gradients are averaged
across processes by an explicit all-reduce (the sampler's f⁻¹ is a second entry point into the
same parameters, which a DDP wrapper around forward alone would not cover). Rank 0 calibrates and
writes checkpoints.

Checkpoints (model dir + run/ train state) every --ckpt-every steps or --ckpt-minutes minutes,
whichever comes first; re-running the same command resumes. The INN records the JSCC model_id and
refuses to resume against another JSCC.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..channel import generator_for
from ..checkpoint import (has_train_state, load_config, load_train_state, save_model,
                          save_train_state, write_json)
from ..distributed import accelerator, is_spawned_rank, spawn_local
from ..errors import InputError
from ..jscc.train import cosine_lr, make_pairs
from .haar import haar_lowpass, haar_multilevel
from .model import KIND, INNConfig, InvertibleDegradation, build_inn

ARCH_FIELDS = ("image_size", "channels", "levels", "blocks", "hidden", "emb_dim", "clamp", "snr_min",
               "snr_max", "jscc_model_id", "lambda_d", "lambda_inv")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jscc", required=True, help="DeepJSCC model directory whose degradation to model")
    p.add_argument("--out", required=True, help="INN model directory (created; resumed if it has a run/)")
    p.add_argument("--data", default=None, help="training data (default: the JSCC's data set)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--snr-min", type=float, default=-5.0)
    p.add_argument("--snr-max", type=float, default=15.0)
    p.add_argument("--levels", type=int, default=2, help="Haar levels L (c is H/2^L × W/2^L)")
    p.add_argument("--blocks", default="2,4", help="coupling blocks per level, fine → coarse")
    p.add_argument("--hidden", type=int, default=32, help="subnet width")
    p.add_argument("--lambda-d", type=float, default=0.01, help="weight of the detail regulariser")
    p.add_argument("--lambda-inv", type=float, default=1.0,
                   help="weight of the inverse-consistency term ‖f⁻¹(g(x̂), d(x)) − x‖²")
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--ckpt-minutes", type=float, default=5.0)
    p.add_argument("--calib-images", type=int, default=32, help="val images for the σ_c calibration")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (under a launcher: each rank's own GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-processes", type=int, default=1, help="spawn N local CPU processes "
                   "(accelerate / torch.distributed; the global --batch is split over them)")
    p.add_argument("--cpu", action="store_true", help="force CPU even when a GPU is present")
    p.add_argument("--no-progress", action="store_true")


def inn_loss(inn: InvertibleDegradation, x01: torch.Tensor, xh01: torch.Tensor, snr: torch.Tensor,
             lambda_d: float, lambda_inv: float = 0.0) -> tuple[torch.Tensor, dict]:
    """The training loss (module doc) and its parts, for one batch of pairs (x, x̂) in [0, 1]."""
    L = inn.config.levels
    x, xh = 2 * x01 - 1, 2 * xh01 - 1
    c, d, _ = inn(x, snr, warn=False)
    target = haar_lowpass(xh, L)
    loss_c = torch.mean((c - target) ** 2)
    loss = loss_c
    parts = {"loss_c": float(loss_c.detach())}
    if lambda_d > 0:
        _, det = haar_multilevel(x, L)
        loss_d = torch.mean((d - torch.cat([t.flatten(1) for t in det], 1)) ** 2)
        loss = loss + lambda_d * loss_d
        parts["loss_d"] = float(loss_d.detach())
    if lambda_inv > 0:
        loss_inv = torch.mean((inn.inverse(target, d, snr, warn=False) - x) ** 2)
        loss = loss + lambda_inv * loss_inv
        parts["loss_inv"] = float(loss_inv.detach())
    with torch.no_grad():
        parts["baseline"] = float(torch.mean((haar_lowpass(x, L) - target) ** 2))
    return loss, parts


def snr_grid(lo: float, hi: float, step: float = 2.5) -> list[float]:
    n = int(round((hi - lo) / step))
    return [round(lo + (hi - lo) * i / n, 4) for i in range(n + 1)]


class Calibrator:
    """Fixed (x, x̂) pairs on a SNR grid; measures σ_c(snr) per channel (module doc)."""

    def __init__(self, jscc, x01: torch.Tensor, ids: list[str], grid: list[float], seed: int = 0):
        self.x, self.grid, self.pairs = x01, grid, []
        dev = next(jscc.parameters()).device
        for s in grid:
            gens = [generator_for(seed, f"inn-calib:{i}:{s}") for i in ids]
            snr = torch.full((len(ids),), float(s), device=dev)
            self.pairs.append(torch.cat([
                make_pairs(jscc, x01[j:j + 32].to(dev), snr[j:j + 32], gens[j:j + 32]).cpu()
                for j in range(0, len(ids), 32)]))

    @torch.no_grad()
    def __call__(self, inn: InvertibleDegradation) -> dict:
        was = inn.training
        inn.eval()
        dev = next(inn.parameters()).device
        L = inn.config.levels
        std, std_haar = [], []
        for s, xh in zip(self.grid, self.pairs):
            x = (2 * self.x - 1).to(dev)
            c, _, _ = inn(x, torch.full((len(x),), float(s), device=dev), warn=False)
            gy = haar_lowpass(2 * xh.to(dev) - 1, L)
            std.append(((c - gy) ** 2).mean(dim=(0, 2, 3)).sqrt().cpu().tolist())
            std_haar.append(((haar_lowpass(x, L) - gy) ** 2).mean(dim=(0, 2, 3)).sqrt().cpu().tolist())
        inn.train(was)
        r = lambda v: [[round(float(a), 6) for a in row] for row in v]
        return {"snr_db": list(self.grid), "std": r(std), "std_haar": r(std_haar),
                "n_images": int(len(self.x)), "split": "val"}


def model_card(cfg: INNConfig, command: str) -> str:
    t, sc = cfg.training, cfg.sigma_c
    rows = "\n".join(
        f"| {s:g} | {', '.join(f'{v:.4f}' for v in a)} | {', '.join(f'{v:.4f}' for v in b)} |"
        for s, a, b in zip(sc.get("snr_db", []), sc.get("std", []), sc.get("std_haar", [])))
    last = t.get("last", {})
    return f"""# SING-INN for `{cfg.jscc_model_id}`

SNR-conditioned invertible model f_θ(x; snr) = (c, d) of the DeepJSCC degradation
(docs/ALGORITHMS.md §5, code `sing/inn/`). c (the coarse "range" part, {cfg.coarse_shape}) is trained to
match g(x̂), the {cfg.levels}-level Haar low-pass of the DeepJSCC output; d is the rest.

- DeepJSCC: `{cfg.jscc_model_id}` (BCR {cfg.jscc_bcr}); the INN refuses any other JSCC.
- Data: `{cfg.dataset}` training crops, {cfg.image_size}×{cfg.image_size}, C = {cfg.channels};
  AWGN, SNR ~ U[{cfg.snr_min:g}, {cfg.snr_max:g}] dB per pair, pairs made on the fly.
- Architecture: {cfg.levels} Haar levels, coupling blocks per level {cfg.blocks}, subnet width
  {cfg.hidden}, SNR embedding {cfg.emb_dim} (FiLM into every subnet), soft clamp {cfg.clamp}.
- Loss: mean‖c − g(x̂)‖² + λ_d·mean‖d − h(x)‖² + λ_inv·mean‖f⁻¹(g(x̂), d) − x‖²,
  λ_d = {cfg.lambda_d} (h: Haar details of x), λ_inv = {cfg.lambda_inv}.
- Recipe: {t.get('steps')} steps, batch {t.get('batch')}, Adam lr {t.get('lr')} (warm-up + cosine),
  seed {t.get('seed')}, device {t.get('device')}, {t.get('threads')} torch thread(s),
  {t.get('elapsed_s')} s; commit {t.get('commit')}.
- Last training losses (EMA): loss_c {last.get('loss_c')}, baseline mean‖g(x) − g(x̂)‖²
  {last.get('baseline')}, loss_d {last.get('loss_d')}, loss_inv {last.get('loss_inv')}.

Command:

```
{command}
```

## σ_c calibration ({sc.get('n_images')} {sc.get('split')} images, fixed noise)

RMS of c(x; snr) − g(x̂) per channel (diffusion-scale Haar coefficients), used by the sampler as
the observation noise σ_y; "Haar" is the same for the untrained f (c = g(x)), i.e. what a
linear average-pooling model of the degradation would have to assume.

| SNR (dB) | σ_c trained | σ_c Haar (untrained) |
|---|---|---|
{rows}
"""


def train(args) -> Path:
    from tqdm import tqdm
    from .. import data as D
    from ..cli import command_line
    from ..commands.eval import git_commit
    from ..jscc import load_jscc

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    on_cpu = args.cpu or args.device == "cpu" or not torch.cuda.is_available()
    acc = accelerator(on_cpu)
    world, rank, main = acc.num_processes, acc.process_index, acc.is_main_process
    if args.batch % world:
        raise InputError(f"--batch {args.batch} does not split over {world} processes: use a multiple")
    dev = acc.device if world > 1 or not on_cpu else torch.device("cpu")
    jscc = load_jscc(args.jscc, dev)
    jscc.requires_grad_(False)
    jc = jscc.config
    data = args.data or jc.dataset
    inf = D.info(data)
    if (inf.image_size, inf.channels) != (jc.image_size, jc.channels):
        raise InputError(f"data set {data} has {inf.channels}×{inf.image_size}² images but the JSCC "
                         f"takes {jc.channels}×{jc.image_size}²")
    try:
        blocks = [int(b) for b in str(args.blocks).split(",")]
    except ValueError as e:
        raise InputError(f"--blocks must be comma-separated integers, got {args.blocks!r}") from e
    if args.snr_min < jc.snr_min or args.snr_max > jc.snr_max:
        print(f"warning: INN SNR range [{args.snr_min}, {args.snr_max}] exceeds the JSCC's trained "
              f"range [{jc.snr_min}, {jc.snr_max}] (the JSCC clamps its SNR input)")
    cfg = INNConfig(image_size=jc.image_size, channels=jc.channels, levels=args.levels, blocks=blocks,
                    hidden=args.hidden, snr_min=args.snr_min, snr_max=args.snr_max,
                    jscc_model_id=jscc.model_id, jscc_bcr=jc.bcr, dataset=data, lambda_d=args.lambda_d,
                    lambda_inv=args.lambda_inv)
    inn = build_inn(cfg, seed=args.seed).to(dev)
    opt = torch.optim.Adam(inn.parameters(), lr=args.lr)
    step, history, elapsed0 = 0, [], 0.0
    run_dir = out / "run"
    if has_train_state(run_dir):
        prev = INNConfig.from_dict(load_config(out, kind=KIND), where=str(out)).to_dict()
        now = cfg.to_dict()
        diff = [k for k in ARCH_FIELDS if prev.get(k) != now.get(k)]
        if diff:
            raise InputError(f"{out} holds a run with another configuration ({', '.join(diff)} differ"
                             f"{'; the JSCC weights changed' if 'jscc_model_id' in diff else ''}): use a "
                             f"new --out, or the same arguments and JSCC to resume")
        st = load_train_state(run_dir, model=inn, optimizer=opt)
        step, history = st["step"], st["extra"].get("history", [])
        elapsed0 = float(st["extra"].get("elapsed_s", 0.0))
        if main:
            print(f"resuming {out} at step {step}")
    calib = None
    if main:
        x_cal, ids = D.load_split(data, "val", n=args.calib_images, progress=not args.no_progress)
        calib = Calibrator(jscc, x_cal, ids, snr_grid(args.snr_min, args.snr_max), seed=args.seed)
    batches = D.train_batches(data, args.batch // world, seed=args.seed + 7919 * step + 104729 * rank,
                              progress=main and not args.no_progress)
    g = torch.Generator().manual_seed(args.seed * 1000003 + step + 7777 * rank)
    command = command_line("train-inn", args, (
        "jscc", "out", "data", "steps", "batch", "lr", "snr_min", "snr_max", "levels", "blocks", "hidden",
        "lambda_d", "lambda_inv", "threads", "seed", "device"))
    command += f" --num-processes {world}" if world > 1 else ""
    inn.train()
    t0, t_ck = time.time(), time.time()
    saved_at = -1
    ema: dict = {}
    bar = tqdm(total=args.steps, initial=step, desc=f"train-inn {jscc.model_id}",
               disable=args.no_progress or not main, mininterval=5)

    def checkpoint():
        acc.wait_for_everyone()
        if not main:
            return
        el = round(elapsed0 + time.time() - t0, 1)
        inn.config.sigma_c = calib(inn)
        inn.config.training = {"steps": step, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                               "device": str(dev), "threads": torch.get_num_threads(), "processes": world,
                               "elapsed_s": el, "commit": git_commit(), "command": command,
                               "last": {k: round(v, 6) for k, v in ema.items()}}
        save_model(out, inn.state_dict(), inn.config.to_dict(), card=model_card(inn.config, command))
        save_train_state(run_dir, model=inn, optimizer=opt, step=step,
                         extra={"history": history, "elapsed_s": el})
        write_json(out / "history.json", history)

    while step < args.steps:
        for grp in opt.param_groups:
            grp["lr"] = cosine_lr(step, args.steps, args.lr, warmup=100)
        x = next(batches).to(dev)
        snr = (torch.rand(x.shape[0], generator=g) * (args.snr_max - args.snr_min) + args.snr_min).to(dev)
        xh = make_pairs(jscc, x, snr, g)
        loss, parts = inn_loss(inn, x, xh, snr, args.lambda_d, args.lambda_inv)
        if not torch.isfinite(loss):
            raise InputError(f"the INN loss became {float(loss)} at step {step}: lower --lr and resume "
                             f"from the last checkpoint")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:                     # average gradients (and the logged parts) over processes
            for p_ in inn.parameters():
                if p_.grad is not None:
                    p_.grad = acc.reduce(p_.grad, reduction="mean")
            red = acc.reduce(torch.tensor([parts[k] for k in sorted(parts)], device=dev), reduction="mean")
            parts = dict(zip(sorted(parts), red.tolist()))
        torch.nn.utils.clip_grad_norm_(inn.parameters(), 1.0)
        opt.step()
        step += 1
        for k, v in parts.items():
            ema[k] = 0.98 * ema[k] + 0.02 * v if k in ema else v
        bar.update(1)
        bar.set_postfix(loss_c=f"{ema['loss_c']:.5f}", base=f"{ema['baseline']:.5f}")
        if step % args.log_every == 0 or step == args.steps:
            history.append({"step": step, **{k: round(v, 6) for k, v in ema.items()},
                            "elapsed_s": round(elapsed0 + time.time() - t0, 1)})
            if args.no_progress and main:
                print(json.dumps(history[-1]), flush=True)
        timed = time.time() - t_ck > 60 * args.ckpt_minutes
        if world > 1:                     # every process must agree (the checkpoint has a barrier)
            timed = bool(acc.reduce(torch.tensor([float(timed)], device=dev), reduction="sum")[0] > 0)
        if step % args.ckpt_every == 0 or step == args.steps or timed:
            checkpoint()
            saved_at = step
            t_ck = time.time()
    bar.close()
    if saved_at != step:                  # steps already reached on resume: still write the model
        checkpoint()
    acc.wait_for_everyone()
    acc.end_training()
    return out


def run(args) -> int:
    if args.num_processes > 1 and not is_spawned_rank():
        return spawn_local("train-inn", args.num_processes, args.threads or 1)
    train(args)
    return 0
