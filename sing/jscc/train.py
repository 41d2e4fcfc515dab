# SPDX-License-Identifier: GPL-3.0-or-later
"""`sing train-jscc`: train a DeepJSCC model end to end through the channel (docs/ALGORITHMS.md §2).

Loss (per batch, SNR_b ~ U[snr_min, snr_max] per image, AWGN):
    L = MSE(x, x̂) + λ · LPIPS_alex(x, x̂)          (λ = 0 for the MSE model)
AdamW, linear warm-up then cosine decay, periodic validation (PSNR at 0 dB on the val split),
checkpoints (safetensors + JSON) every --ckpt-every steps; re-running the same command resumes.
`--init-from DIR` starts from another JSCC model (e.g. the perceptual variant from the MSE one).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from ..channel import awgn_per_sample, generator_for
from ..checkpoint import (has_train_state, load_config, load_into, load_state, load_train_state,
                          save_model, save_train_state, write_json)
from ..errors import InputError
from .model import KIND, JSCCConfig, build_jscc


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="natural", help="natural | fmnist | folder:PATH | folder@SIZE:PATH")
    p.add_argument("--bcr", default="1/48", help="bandwidth compression ratio k/n, e.g. 1/48")
    p.add_argument("--out", required=True, help="model directory (created; resumed if it has a train state)")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--snr-min", type=float, default=-5.0)
    p.add_argument("--snr-max", type=float, default=15.0)
    p.add_argument("--lpips-weight", type=float, default=0.0, help="> 0: MSE + λ·LPIPS (perceptual DeepJSCC)")
    p.add_argument("--init-from", default=None, help="start from this JSCC model directory's weights")
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def cosine_lr(step: int, total: int, base: float, warmup: int = 200) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 2 % of `base` at `total` (train-jscc,
    train-inn)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


@torch.no_grad()
def make_pairs(jscc, x01: torch.Tensor, snr: torch.Tensor, generators) -> torch.Tensor:
    """x̂ = D(E(x) + w, snr): one noise generator per image (or one for the batch). train-inn's
    training pairs and the validation here."""
    z = jscc.encode(x01, snr)
    if isinstance(generators, (list, tuple)):
        y = torch.cat([awgn_per_sample(z[i:i + 1], snr[i:i + 1].cpu(), g) for i, g in enumerate(generators)])
    else:
        y = awgn_per_sample(z, snr.cpu(), generators)
    return jscc.decode(y, snr).float()


@torch.no_grad()
def validate(model, x_val: torch.Tensor, snr_db: float = 0.0, seed: int = 1234) -> dict:
    from ..metrics import psnr
    model.eval()
    dev = next(model.parameters()).device
    gens = [generator_for(seed, i) for i in range(len(x_val))]
    snr = torch.full((len(x_val),), float(snr_db), device=dev)
    xh = torch.cat([make_pairs(model, x_val[i:i + 64].to(dev), snr[i:i + 64], gens[i:i + 64]).cpu()
                    for i in range(0, len(x_val), 64)])
    model.train()
    return {"snr_db": snr_db, "psnr": float(psnr(xh, x_val).mean())}


def train(args) -> Path:
    from tqdm import tqdm
    from .. import data as D

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    inf = D.info(args.data)
    cfg = JSCCConfig(image_size=inf.image_size, channels=inf.channels, bcr=args.bcr,
                     features=args.features, blocks=args.blocks, snr_min=args.snr_min,
                     snr_max=args.snr_max, loss="mse+lpips" if args.lpips_weight > 0 else "mse",
                     lpips_weight=args.lpips_weight, dataset=args.data)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    model = build_jscc(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-5)
    step, history = 0, []
    run_dir = out / "run"
    if has_train_state(run_dir):
        prev = JSCCConfig.from_dict(load_config(out, kind=KIND))
        if prev.to_dict() | {"notes": {}} != cfg.to_dict() | {"notes": {}}:
            raise InputError(f"{out} holds a run with another configuration; use a new --out or the "
                             f"same arguments to resume")
        st = load_train_state(run_dir, model=model, optimizer=opt)
        step, history = st["step"], st["extra"].get("history", [])
        print(f"resuming {out} at step {step}")
    elif args.init_from:
        load_into(model, load_state(args.init_from), args.init_from)
        print(f"initialised from {args.init_from}")
    lp = None
    if args.lpips_weight > 0:
        from ..metrics import load_lpips
        lp = load_lpips("alex", device=dev)
    x_val, _ = D.load_split(args.data, "val", n=64, progress=not args.no_progress)
    batches = D.train_batches(args.data, args.batch, seed=args.seed + step)
    g = torch.Generator().manual_seed(args.seed * 1000003 + step)
    model.train()
    t0, last_loss = time.time(), float("nan")
    bar = tqdm(total=args.steps, initial=step, desc=f"train-jscc {args.data} bcr {cfg.bcr}",
               disable=args.no_progress, mininterval=5)

    def checkpoint():
        cfg.notes = {"steps": step, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                     "init_from": args.init_from, "history": history[-1] if history else None}
        save_model(out, model.state_dict(), cfg.to_dict())
        save_train_state(run_dir, model=model, optimizer=opt, step=step, extra={"history": history})
        write_json(out / "history.json", history)

    while step < args.steps:
        for grp in opt.param_groups:
            grp["lr"] = cosine_lr(step, args.steps, args.lr)
        x = next(batches).to(dev)
        snr = (torch.rand(x.shape[0], generator=g) * (cfg.snr_max - cfg.snr_min) + cfg.snr_min).to(dev)
        xh = model(x, snr, channel=lambda z: awgn_per_sample(z, snr, g))
        loss = torch.mean((xh - x) ** 2)
        if lp is not None:
            loss = loss + args.lpips_weight * lp(xh, x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        last_loss = 0.98 * last_loss + 0.02 * loss.item() if math.isfinite(last_loss) else loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{last_loss:.4f}")
        if step % args.val_every == 0 or step == args.steps:
            v = validate(model, x_val)
            history.append({"step": step, "loss": last_loss, "val_psnr_0db": v["psnr"],
                            "elapsed_s": round(time.time() - t0, 1)})
            bar.write(json.dumps(history[-1]))
        if step % args.ckpt_every == 0 or step == args.steps:
            checkpoint()
    bar.close()
    return out


def run(args) -> int:
    train(args)
    return 0
