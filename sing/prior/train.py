# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing train-prior`: DDPM training of the diffusion prior (Ho et al. 2020, arXiv 2006.11239, Alg. 1):

    x_0 ~ data (scaled to [-1, 1]),  t ~ U{0, …, T−1},  ε ~ N(0, I)
    x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε                                    (Eq. 4)
    L   = ‖ε − ε_θ(x_t, t)‖²                                        (Eq. 14, "L_simple")

AdamW, gradient clipping, linear warm-up, EMA of the weights (decay min(d, (1+s)/(10+s))).
Runs on Hugging Face accelerate: one CPU by default; `--num-processes N` spawns N CPU processes
(torchrun env → accelerate MULTI_CPU / gloo); on GPUs use `accelerate launch -m sing.cli train-prior`.

Run directory (`--out`, e.g. runs/prior-fmnist-32): `ckpt-<step>/` (model + EMA + AdamW state +
RNG-free meta, via sing.checkpoint.save_train_state), `latest.json` pointing at the newest
complete checkpoint, `loss.csv`, `samples-<step>.png`. Resume = run the same command again.
Export (`--export`, e.g. models/prior-fmnist-32): the EMA UNet as a sing.prior model dir
(config.json + model.safetensors), plus `train_weights.safetensors` (the raw weights, fp16), the
loss log and curve, the sample grid and a model card. If the run directory has no checkpoint but
the export directory holds a model, training continues from it (weights + EMA, fresh optimizer),
so a committed model can be trained further in a later session.

Determinism: t and ε come from a generator seeded by (seed, rank, step); the data stream is
re-seeded by (seed, rank, step) at every checkpoint, so a run killed and resumed from checkpoint
k computes exactly what an uninterrupted run computes (tests/test_prior.py checks this).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open

from ..checkpoint import (card_with_notes, file_digest, has_train_state, load_config, load_state, load_into,
                          load_train_state, save_tensors, save_train_state, write_json)
from ..distributed import accelerator, is_spawned_rank, spawn_local
from ..errors import CheckpointError, InputError
from .ddim import randn
from .model import DiffusionPrior, PriorConfig, alphas_cumprod_from, build_unet, save_prior

LATEST = "latest.json"
LOSS_CSV = "loss.csv"
RAW_WEIGHTS = "train_weights.safetensors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="natural | fmnist | folder:PATH (see sing.data)")
    p.add_argument("--out", required=True, help="run directory for checkpoints (e.g. runs/prior-fmnist-32)")
    p.add_argument("--export", default=None, help="model directory to export the EMA weights into "
                   "at every checkpoint (e.g. models/prior-fmnist-32)")
    p.add_argument("--steps", type=int, default=20000, help="total optimiser steps (a resumed run "
                   "stops at this step count)")
    p.add_argument("--batch", type=int, default=16, help="global batch size (split over processes)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=200, help="linear LR warm-up steps")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--ckpt-every", type=int, default=500, help="checkpoint every N steps …")
    p.add_argument("--ckpt-minutes", type=float, default=10.0, help="… or every M minutes (0: off)")
    p.add_argument("--sample-every", type=int, default=0, help="sample grid at the first "
                   "checkpoint N steps after the last grid (0: at every checkpoint)")
    p.add_argument("--sample-n", type=int, default=16)
    p.add_argument("--sample-steps", type=int, default=50)
    p.add_argument("--unet-preset", default="base", help="tiny | small | small2 | base | wide")
    p.add_argument("--source-fraction", type=float, default=1.0, help="train on this fraction of the "
                   "natural train sources (nested subsets; for data-size curves)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--num-processes", type=int, default=1, help="spawn N local CPU processes "
                   "(data parallel through accelerate)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (with a checkpoint) after "
                   "this much wall time (0: no limit)")
    p.add_argument("--keep", type=int, default=2, help="checkpoints to keep in the run directory")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--fp16-export", action="store_true", help="store exported EMA weights in fp16")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--cpu", action="store_true", help="force CPU even when a GPU is present")
    p.add_argument("--low-t-fraction", type=float, default=0.0,
                   help="fraction of each batch whose timesteps are drawn from [0, --low-t-max) instead "
                        "of [0, T): more training where a warm-started SING chain runs (0: uniform)")
    p.add_argument("--low-t-max", type=int, default=200)
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"],
                   help="autocast the UNet forward (accelerate): bf16 is 1.6x faster on a CPU with "
                   "AVX512-BF16 and the usual choice on GPUs; weights, EMA and optimizer stay fp32")


# ----------------------------------------------------------------------------------------------
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm.detach().to(pe.dtype), 1.0 - decay)
        for be, bm in zip(ema.buffers(), model.buffers()):
            be.copy_(bm)


def _latest(run: Path) -> Path | None:
    f = run / LATEST
    if not f.exists():
        return None
    try:
        d = run / json.loads(f.read_text())["dir"]
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"{f} is unreadable ({e}); delete it to restart from scratch") from e
    return d if has_train_state(d) else None


def _read_loss(run: Path, upto: int) -> list[dict]:
    f = run / LOSS_CSV
    if not f.exists():
        return []
    with f.open() as fh:
        return [r for r in csv.DictReader(fh) if int(r["step"]) <= upto]


def _write_loss(run: Path, rows: list[dict]) -> None:
    f = run / LOSS_CSV
    tmp = f.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["step", "loss", "lr", "elapsed_s"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, f)


def plot_loss(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not rows:
        return
    s = [int(r["step"]) for r in rows]
    l = [float(r["loss"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.plot(s, l, lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("ε-MSE (running mean)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
def _check_args(args: argparse.Namespace) -> None:
    if not 0.0 <= args.low_t_fraction <= 1.0 or args.low_t_max < 1:
        raise InputError("--low-t-fraction must be in [0, 1] and --low-t-max ≥ 1")
    if args.steps < 1 or args.batch < 1:
        raise InputError("--steps and --batch must be ≥ 1")
    if args.mixed_precision == "fp16" and (args.cpu or not torch.cuda.is_available()):
        raise InputError("--mixed-precision fp16 needs a GPU; use bf16 on a CPU")


def _model_config(args, acc, run_dir: Path, export: Path | None,
                  first: torch.Tensor) -> tuple[PriorConfig, Path | None, Path | None]:
    """The model config from the newest checkpoint, else the export dir, else the data + preset;
    with the DC statistics of the sampler. Returns (cfg, checkpoint or None, export to start from)."""
    ckpt = _latest(run_dir)
    init_from_export = None
    if ckpt is not None:
        cfg = PriorConfig.from_dict(json.loads((ckpt / "prior_config.json").read_text()), str(ckpt))
    elif export is not None and (export / "config.json").exists():
        cfg = PriorConfig.from_dict(load_config(export, "sing.prior"), str(export))
        init_from_export = export
    else:
        cfg = PriorConfig.preset(args.unet_preset, int(first.shape[-1]), int(first.shape[1]),
                                 dataset=args.data)
    if tuple(first.shape[1:]) != (cfg.channels, cfg.image_size, cfg.image_size):
        raise CheckpointError(f"the checkpoint is for {cfg.channels}×{cfg.image_size}×{cfg.image_size}"
                              f" images but --data {args.data} gives {tuple(first.shape[1:])}: use "
                              f"another --out/--export directory for this data")
    if not cfg.dc_prior:        # the sampler's DC posterior (dc_posterior.py): train-split statistics
        from .dc_posterior import from_data
        try:
            cfg.dc_prior = from_data(args.data).to_dict()
        except InputError as e:
            acc.print(f"warning: no DC statistics for the sampler ({e}); samples use plain DDIM")
    return cfg, ckpt, init_from_export


def _build(args, acc, cfg: PriorConfig, ckpt: Path | None, init_from_export: Path | None):
    """UNet, EMA copy and AdamW, resumed from a checkpoint or continued from an exported model.
    Returns (model, ema, opt, step, elapsed seconds so far)."""
    torch.manual_seed(args.seed)
    model = build_unet(cfg.unet)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    step, elapsed0 = 0, 0.0
    if ckpt is not None:
        st = load_train_state(ckpt, model=model, optimizer=opt, ema=ema)
        step, elapsed0 = st["step"], float(st["extra"].get("elapsed_s", 0.0))
        acc.print(f"resuming from {ckpt} at step {step}")
    elif init_from_export is not None:
        load_into(ema, load_state(init_from_export), str(init_from_export))
        raw = init_from_export / RAW_WEIGHTS
        load_into(model, {k: v.float() for k, v in load_state(init_from_export, RAW_WEIGHTS).items()}
                  if raw.exists() else ema.state_dict(), str(raw))
        step = int(cfg.training.get("steps", 0))
        elapsed0 = float(cfg.training.get("hours", 0.0)) * 3600
        acc.print(f"continuing from the exported model {init_from_export} at step {step} "
                  f"(weights + EMA; the optimizer state starts fresh)")
    for g in opt.param_groups:     # the command line decides the learning rate of a resumed run
        g["lr"] = args.lr
        g["initial_lr"] = args.lr
    model, opt = acc.prepare(model, opt)
    ema.to(acc.device)
    return model, ema, opt, step, elapsed0


def _train_step(args, acc, model, ema, opt, ac: torch.Tensor, x0: torch.Tensor, step: int) -> tuple[float, float]:
    """One DDPM step (module doc, Eq. 4 and 14) with t, ε from a generator seeded by (seed, rank,
    step), warm-up learning rate, clipping and the EMA update. Returns (loss, learning rate)."""
    g = torch.Generator().manual_seed((args.seed * 1_000_003 + acc.process_index * 7919 + step) % (2 ** 63))
    t = torch.randint(0, len(ac), (x0.shape[0],), generator=g)
    if args.low_t_fraction > 0:          # a mixture: U[0, low_t_max) with prob. low_t_fraction
        low = torch.rand(x0.shape[0], generator=g) < args.low_t_fraction
        t = torch.where(low, torch.randint(0, args.low_t_max, (x0.shape[0],), generator=g), t)
    t = t.to(acc.device)
    noise = randn(x0.shape, g, acc.device)
    a = ac[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise                       # Eq. 4
    lr = args.lr * min(1.0, (step + 1) / max(1, args.warmup))
    for pg in opt.param_groups:
        pg["lr"] = lr
    loss = F.mse_loss(model(x_t, t).sample.float(), noise)              # Eq. 14
    acc.backward(loss)
    if args.grad_clip > 0:
        acc.clip_grad_norm_(model.parameters(), args.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    _ema_update(ema, acc.unwrap_model(model), min(args.ema_decay, (1 + step + 1) / (10 + step + 1)))
    return float(loss.detach()), lr


def _checkpoint(args, acc, run_dir: Path, export: Path | None, model, ema, opt, cfg: PriorConfig,
                recipe: dict, loss_rows: list[dict], step: int, elapsed: float, sample: bool) -> None:
    """Save the train state (keeping `--keep`), the loss log, optionally a sample grid, and the export."""
    if not acc.is_main_process:
        return
    name = f"ckpt-{step:07d}"
    d = run_dir / name
    save_train_state(d, model=acc.unwrap_model(model), optimizer=opt, ema=ema, step=step,
                     extra={"elapsed_s": elapsed, "recipe": recipe})
    write_json(d / "prior_config.json", cfg.to_dict())
    write_json(run_dir / LATEST, {"dir": name, "step": step})
    old = sorted(p for p in run_dir.glob("ckpt-*") if p.is_dir() and p.name != name)
    for p in old[: max(0, len(old) - (args.keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    _write_loss(run_dir, loss_rows)
    grid = None
    if sample:
        from .sample import sample_images, save_grid
        prior = DiffusionPrior(copy.deepcopy(ema).float().cpu(), cfg.scheduler_config(),
                               cfg.to_dict(), source="ema")
        x = sample_images(prior, args.sample_n, args.sample_steps,
                          generator=torch.Generator().manual_seed(1234), progress=False)
        grid = save_grid(x, run_dir / f"samples-{step:07d}.png", scale=4 if cfg.image_size < 64 else 2)
    if export is not None:
        _export(export, ema, cfg, recipe, step, elapsed, loss_rows, grid, args, acc.unwrap_model(model))


def _loss_row(step: int, loss: float, lr: float, elapsed: float) -> dict:
    return {"step": step, "loss": f"{loss:.6f}", "lr": f"{lr:.3g}", "elapsed_s": f"{elapsed:.1f}"}


def run(args: argparse.Namespace) -> int:
    if args.num_processes > 1 and not is_spawned_rank():
        return spawn_local("train-prior", args.num_processes, args.threads)
    torch.set_num_threads(max(1, args.threads))
    from tqdm.auto import tqdm
    from .. import data as sdata

    _check_args(args)
    acc = accelerator(args.cpu or not torch.cuda.is_available(), args.mixed_precision)
    world, rank = acc.num_processes, acc.process_index
    if args.batch % world:
        raise InputError(f"--batch {args.batch} does not split over {world} processes: use a multiple")
    run_dir = Path(args.out)
    export = Path(args.export) if args.export else None
    if acc.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    acc.wait_for_everyone()

    def batches(step: int):     # the data stream, re-seeded by (seed, rank, step)
        return sdata.train_batches(args.data, args.batch // world,
                                   seed=(args.seed * 1_000_003 + rank * 7919 + step) % (2 ** 32),
                                   progress=acc.is_main_process and not args.no_progress,
                                   source_fraction=args.source_fraction)

    cfg, ckpt, init_from_export = _model_config(args, acc, run_dir, export, next(batches(0)))
    model, ema, opt, step, elapsed0 = _build(args, acc, cfg, ckpt, init_from_export)
    loss_rows = _read_loss(init_from_export or run_dir, step) if acc.is_main_process else []
    ac = alphas_cumprod_from(cfg.scheduler_config()).to(acc.device, torch.float32)
    recipe = {"data": args.data, "batch": args.batch, "lr": args.lr, "warmup": args.warmup,
              "ema_decay": args.ema_decay, "grad_clip": args.grad_clip, "seed": args.seed,
              "weight_decay": args.weight_decay, "processes": world, "threads": args.threads,
              "device": str(acc.device), "unet_preset": args.unet_preset,
              "mixed_precision": args.mixed_precision,
              **({"low_t_fraction": args.low_t_fraction, "low_t_max": args.low_t_max}
                 if args.low_t_fraction > 0 else {}),
              **({"source_fraction": args.source_fraction} if args.source_fraction != 1 else {})}

    t_start = last_ckpt_t = time.time()
    it = batches(step)
    bar = tqdm(total=args.steps, initial=step, desc="train-prior", dynamic_ncols=True,
               mininterval=0.1 if sys.stderr.isatty() else 60,
               disable=not acc.is_main_process or args.no_progress)
    run_loss = None
    last_sample = step
    model.train()
    while step < args.steps:
        lv, lr = _train_step(args, acc, model, ema, opt, ac, next(it).to(acc.device) * 2 - 1, step)
        step += 1
        run_loss = lv if run_loss is None else 0.98 * run_loss + 0.02 * lv
        elapsed = elapsed0 + time.time() - t_start
        if step % args.log_every == 0 and acc.is_main_process:
            loss_rows.append(_loss_row(step, run_loss, lr, elapsed))
        bar.update(1)
        bar.set_postfix(loss=f"{run_loss:.4f}")
        timed = args.ckpt_minutes > 0 and time.time() - last_ckpt_t > args.ckpt_minutes * 60
        out_of_time = args.max_minutes > 0 and time.time() - t_start > args.max_minutes * 60
        if world > 1:   # every process must agree on the checkpoint boundary (data re-seeding)
            flag = torch.tensor([float(timed), float(out_of_time)], device=acc.device)
            flag = acc.reduce(flag, reduction="sum")
            timed, out_of_time = bool(flag[0] > 0), bool(flag[1] > 0)
        if step % args.ckpt_every == 0 or timed or step == args.steps or out_of_time:
            sample = (step == args.steps or args.sample_every == 0 or out_of_time
                      or step - last_sample >= args.sample_every)
            if sample:
                last_sample = step
            if acc.is_main_process and (not loss_rows or int(loss_rows[-1]["step"]) != step):
                loss_rows.append(_loss_row(step, run_loss, lr, elapsed))
            _checkpoint(args, acc, run_dir, export, model, ema, opt, cfg, recipe, loss_rows, step,
                        elapsed, sample)
            last_ckpt_t = time.time()
            it = batches(step)          # re-seed the data stream at the checkpoint boundary
            acc.wait_for_everyone()
            if out_of_time:
                acc.print(f"stopping after {args.max_minutes} minutes at step {step}")
                break
    bar.close()
    acc.wait_for_everyone()
    acc.print(f"done: step {step}, run dir {run_dir}" + (f", model {export}" if export else ""))
    acc.end_training()
    return 0


# ----------------------------------------------------------------------------------------------
def _export(export: Path, ema: torch.nn.Module, cfg: PriorConfig, recipe: dict, step: int,
            elapsed: float, loss_rows: list[dict], grid: Path | None, args, model) -> None:
    cfg = PriorConfig.from_dict(cfg.to_dict())
    cfg.training = {**recipe, "steps": step, "hours": round(elapsed / 3600, 3),
                    "command": _command(args)}
    samples_step = step if grid is not None else (      # the step of samples.png: this one or the last
        load_config(export).get("training", {}).get("samples_step") if (export / "config.json").exists() else None)
    if samples_step is not None:
        cfg.training["samples_step"] = samples_step
    save_prior(export, ema, cfg, fp16=args.fp16_export)
    save_tensors({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
                 export / RAW_WEIGHTS)
    _write_loss(export, loss_rows)
    plot_loss(loss_rows, export / "loss.png", f"{export.name}: {args.data}, batch {args.batch}")
    if grid is not None:
        shutil.copyfile(grid, export / "samples.png")
    write_card(export)


def _command(args) -> str:
    if "train-prior" in sys.argv:       # the exact command line when run as `sing train-prior …`
        return "sing train-prior " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("train-prior") + 1:])
    from ..cli import command_line
    return command_line("train-prior", args, ("data", "out", "export", "steps", "batch", "lr", "ema_decay",
                                              "unet_preset", "seed", "threads"))


def write_card(export: Path) -> None:
    """(Re)write README.md of an exported prior from its config, loss log, samples and the
    denoising table (sim/results/prior/denoise-<name>.md when present)."""
    cfg = load_config(export, "sing.prior")
    tr = cfg.get("training", {})
    u = cfg.get("unet", {})
    with safe_open(str(export / "model.safetensors"), "pt") as fh:     # just written by the export
        nparams = sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())
    cand = Path("sim/results/prior") / f"denoise-{export.name}.md"
    table = cand.read_text() if cand.exists() else ""
    digest = file_digest(export / "model.safetensors", 12)
    extra_grids = ""
    if (export / "samples-plain.png").exists():
        extra_grids += ("\nThe same seeds with plain DDIM (`--dc off`):\n\n"
                        "![samples, plain DDIM](samples-plain.png)\n")
    if (export / "data.png").exists():
        extra_grids += "\nTraining images, for comparison:\n\n![train images](data.png)\n"
    stats = Path("sim/results/prior-samples") / f"{export.name}.md"
    if stats.exists():               # sim/prior_samples.py: the grids in numbers
        extra_grids += "\n" + stats.read_text()
    card = f"""# {export.name}: DDPM diffusion prior ({cfg['image_size']}×{cfg['image_size']}, {cfg['channels']} channel{'s' if cfg['channels'] > 1 else ''})

ε-prediction DDPM prior for SING (docs/ALGORITHMS.md §3), a `diffusers.UNet2DModel` trained from scratch
on CPU with `sing train-prior`. Load it with `sing.prior.load_prior("{export}")`.

| | |
|---|---|
| data | `{tr.get('data', cfg.get('dataset', '?'))}` train split (sing.data) |
| UNet | preset `{tr.get('unet_preset', '?')}`, channels {u.get('block_out_channels')}, {u.get('layers_per_block')} layer(s)/block, attention at 8×8, {f'{nparams / 1e6:.2f} M parameters' if nparams else ''} |
| schedule | linear β {cfg.get('beta_start')}…{cfg.get('beta_end')}, T = {cfg.get('num_train_timesteps')}, ε-prediction |
| recipe | AdamW lr {tr.get('lr')} (warm-up {tr.get('warmup')}), batch {tr.get('batch')}, grad clip {tr.get('grad_clip')}, EMA {tr.get('ema_decay')}, seed {tr.get('seed')}, mixed precision {tr.get('mixed_precision', 'no')} (the last run's) |
| trained | **{tr.get('steps')} steps**, {tr.get('hours')} h on {tr.get('processes')} process(es) × {tr.get('threads')} thread(s), device {tr.get('device')} |
| weights | `model.safetensors` = EMA weights (sha256 {digest}…); `train_weights.safetensors` = raw weights (fp16, for resuming; written by the export, kept out of git by .gitignore) |
| commit | (filled in by the commit that adds this file) |

Command:

```
{tr.get('command', '')}
```

Re-running the same command resumes from `runs/` when its checkpoints exist, otherwise from this
directory (raw weights + EMA + step counter; the AdamW state starts fresh; without
`train_weights.safetensors` the raw weights start from the EMA).

## Loss

![loss](loss.png)

## Samples (EMA weights at step {tr.get('samples_step', '?')}, DDIM 50 steps, η 0.5)

![samples](samples.png)

{'With the DC posterior of x̂₀ (the channel means of the clean-image estimate replaced by their Gaussian posterior given x_t, `sing/prior/dc_posterior.py`), using the train-split statistics stored in config.json (' + str(cfg['dc_prior'].get('n_images')) + ' images). `sing sample --dc off` gives plain DDIM.' if cfg.get('dc_prior') else 'Plain DDIM (no DC statistics stored with this prior).'}
{extra_grids}

## Denoising (one-step x̂₀ vs. Wiener, test split)

{table or '(not measured yet: `python -m sing.prior.denoise_table --prior ' + str(export) + ' --data ' + str(tr.get('data', '')) + '`)'}
"""
    (export / "README.md").write_text(card_with_notes(export / "README.md", card))

