"""`sing eval`: one operating point → one `sing.eval/1` result file (docs/BENCHMARKS.md).

image → DeepJSCC encoder (at the nominal SNR) → channel (seeded per image: every method sees the same
noise) → receiver (decoder + method, fed the true or the pilot-estimated SNR) → PSNR/SSIM/LPIPS.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from ..errors import InputError

REPO = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..methods import METHODS
    p.add_argument("--method", default="deepjscc", choices=METHODS)
    p.add_argument("--data", default="natural", help="natural | fmnist | fmnist-rgb64 | natural-gray32 | folder:PATH")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    p.add_argument("--n-images", type=int, default=64)
    p.add_argument("--bcr", default="1/48")
    p.add_argument("--snr-db", type=float, default=0.0)
    p.add_argument("--channel", default="awgn", choices=("awgn", "rayleigh"))
    p.add_argument("--snr-source", default="true", choices=("true", "estimated"),
                   help="SNR given to the receiver: the true (effective) SNR or the pilot estimate")
    p.add_argument("--n-pilots", type=int, default=16)
    p.add_argument("--jscc", default=None, help="JSCC model dir (default: the shipped one for data/BCR)")
    p.add_argument("--prior", default=None, help="prior dir (default: the shipped one for the data)")
    p.add_argument("--calibration", default=None, help="SING-Zero calibration file (default: next to the JSCC)")
    p.add_argument("--inn", default=None, help="SING-INN model dir")
    p.add_argument("--operator", default=None, help="sing-zero operator: spectral | identity | avgpool-s")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--eta", type=float, default=None)
    p.add_argument("--sigma-scale", type=float, default=None, help="scale of the calibrated σ_y")
    p.add_argument("--start", type=float, default=None,
                   help="diffusion restorers from x̂ (sing-zero, ddnm-avgpool, sing-inn): begin the chain at "
                   "start·T from x̂ itself (warm start; 1 = from pure noise)")
    p.add_argument("--inn-from", type=float, default=None,
                   help="sing-inn: INN guidance for t < inn_from·T, Haar guidance before (1 = INN throughout)")
    p.add_argument("--grad-scale", type=float, default=None, help="sing-inn: INDIGO+ gradient term weight")
    p.add_argument("--zeta", type=float, default=None, help="dps: DPS step size ζ")
    p.add_argument("--subsampling", default=None, help="digital-jpeg: 4:2:0 | 4:2:2 | 4:4:4 | best")
    p.add_argument("--header", default=None, choices=("file", "stripped"),
                   help="digital-*: count the whole file (default) or only what a receiver cannot infer")
    p.add_argument("--snr-offset-db", type=float, default=0.0,
                   help="add this to the SNR given to the receiver (mismatch studies)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--worker", default=None, metavar="ENDPOINT",
                   help="restore through a running `sing worker` or `sing broker` (e.g. "
                   "tcp://127.0.0.1:5555) instead of in this process: every image of a batch is in "
                   "flight at once, so a broker spreads them over all its workers. Encoding, channel "
                   "and metrics stay here; the worker must serve this --jscc model and its parts")
    p.add_argument("--worker-timeout-s", type=float, default=None,
                   help="per-request timeout through --worker (default: the client's, 65 s)")
    p.add_argument("--autocast", default=None, choices=("bf16", "fp16"),
                   help="run the prior's UNet under torch.autocast (bf16: ~2x faster on CPUs with "
                   "AVX512-BF16; recorded in the result's setup)")
    p.add_argument("--out", required=True, help="result JSON path")
    p.add_argument("--save-images", default=None, help="folder for restored PNGs (optional)")
    p.add_argument("--no-progress", action="store_true")


def git_commit() -> str:
    try:
        c = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                           text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return c + ("-dirty" if dirty else "") if c else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu:{platform.processor() or platform.machine()}"


def _rel(p) -> str:
    p = Path(p).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


def _worker_client(args):
    from ..worker.client import WorkerClient
    from ..worker.protocol import WorkerUnavailable
    kw = {"timeout_s": args.worker_timeout_s} if args.worker_timeout_s else {}
    client = WorkerClient(args.worker, **kw)
    try:
        client.ping(timeout_s=min(10.0, kw.get("timeout_s", 10.0)))
    except WorkerUnavailable as e:
        client.close()
        raise InputError(f"no worker or broker answers at {args.worker} ({e}): start one with "
                         f"`sing worker --jscc DIR --prior DIR --bind {args.worker}`") from e
    return client


def _restore_remote(client, method, y, snr_rx, ids, jscc, args, params) -> torch.Tensor:
    """Send every image of the batch at once (the worker batches them; a broker spreads them over
    its workers) and wait for all: float16 images back, (B, C, H, W) in [0, 1]."""
    from ..worker.protocol import WorkerError
    futs = [client.submit(y[j].numpy().astype("complex64"), float(snr_rx[j]), method,
                          {"image_id": str(ids[j]), "model_id": jscc.model_id,
                           "snr_source": args.snr_source},
                          params=params, out="float16") for j in range(y.shape[0])]
    imgs = []
    for j, f in enumerate(futs):
        try:
            r = f.result()
        except WorkerError as e:
            raise InputError(f"the worker at {args.worker} failed on image {ids[j]}: {e}") from e
        imgs.append(torch.from_numpy(r.image.astype("float32")).permute(2, 0, 1))
    return torch.stack(imgs)


def evaluate(args) -> dict:
    from tqdm import tqdm
    from .. import data as D
    from ..channel import ChannelConfig, apply_channel, channel_generator
    from ..jscc import load_jscc
    from ..methods import BOUND_METHODS, DEFAULTS, DIFFUSION_METHODS, Receiver, bound, model_dir_for, prior_dir_for
    from ..metrics import compute_metrics, load_lpips

    method = args.method
    inf = D.info(args.data)  # unknown data set names fail first, listing the choices
    perceptual = method == "deepjscc-perceptual"
    jdir = Path(args.jscc) if args.jscc else model_dir_for(args.data, args.bcr, perceptual)
    jscc = load_jscc(jdir, args.device)
    if (jscc.config.channels, jscc.config.image_size) != (inf.channels, inf.image_size):
        raise InputError(f"data {args.data} is {inf.channels}×{inf.image_size}² but model {jdir} takes "
                         f"{jscc.config.channels}×{jscc.config.image_size}²")
    from fractions import Fraction
    if Fraction(jscc.config.bcr) != Fraction(args.bcr):
        raise InputError(f"model {jdir} is for BCR {jscc.config.bcr}, not {args.bcr}")
    prior = cal = inn = None
    prior_path = inn_path = None
    remote = bool(args.worker) and method not in BOUND_METHODS
    if method in DIFFUSION_METHODS and remote:
        prior_path = Path(args.prior) if args.prior else prior_dir_for(args.data)  # recorded only
        if method == "sing-inn":
            inn_path = Path(args.inn) if args.inn else jdir.parent / (jdir.name + "-inn")
    elif method in DIFFUSION_METHODS:
        from ..prior import load_prior
        prior_path = Path(args.prior) if args.prior else prior_dir_for(args.data)
        prior = load_prior(prior_path, device=args.device).set_autocast(args.autocast)
        if method in ("sing-zero", "ddnm-avgpool"):
            from ..zero import load_calibration
            cpath = Path(args.calibration) if args.calibration else jdir / "calibration"
            cal = load_calibration(cpath, model_id=jscc.model_id)
        if method == "sing-inn":
            from ..inn import load_inn
            inn_path = Path(args.inn) if args.inn else jdir.parent / (jdir.name + "-inn")
            inn = load_inn(inn_path, device=args.device, jscc_model_id=jscc.model_id)
    rx = Receiver(jscc, prior=prior, calibration=cal, inn=inn)
    params = {}
    for name in ("operator", "steps", "eta", "sigma_scale", "zeta", "subsampling", "header", "inn_from", "grad_scale",
                 "start"):
        v = getattr(args, name)
        if v is not None:
            if name not in DEFAULTS.get(method, {}):
                raise InputError(f"--{name.replace('_', '-')} does not apply to {method}")
            params[name] = v
    x, ids = D.load_split(args.data, args.split, n=args.n_images, progress=not args.no_progress)
    csi = "pilot" if (args.snr_source == "estimated" or args.channel == "rayleigh") else "perfect"
    ch = ChannelConfig(kind=args.channel, snr_db=args.snr_db, csi=csi, n_pilots=args.n_pilots)
    lp = load_lpips("alex", device=args.device)
    client = _worker_client(args) if remote else None
    outs, snr_rx_all, t_restore, bound_info = [], [], 0.0, []
    bar = tqdm(total=len(x), desc=f"eval {method} {args.channel} {args.snr_db:g} dB", disable=args.no_progress)
    for i in range(0, len(x), args.batch):
        xb, ib = x[i:i + args.batch], ids[i:i + args.batch]
        with torch.no_grad():
            z = jscc.encode(xb.to(args.device), args.snr_db).cpu()
        co = apply_channel(z, ch, [channel_generator(args.seed, j) for j in ib])
        snr_rx = (co.snr_db if args.snr_source == "estimated" else co.snr_true_db) + args.snr_offset_db
        t0 = time.perf_counter()
        if method in BOUND_METHODS:
            # a bound, not a receiver: the codec sees the original images and the ideal code runs at
            # the true effective SNR of each image's channel realisation (|h|²·SNR under Rayleigh)
            snr_rx = co.snr_true_db
            rec, info = bound(method, xb, jscc.k, snr_rx, **params)
            outs.append(rec.cpu())
            bound_info += info
        elif client is not None:
            extra = {"encoder_snr_db": args.snr_db} if method == "dps" else {}
            outs.append(_restore_remote(client, method, co.y, snr_rx, ib, jscc, args,
                                        {**params, **extra, "seed": args.seed}))
        elif method == "dps":
            # the DPS data term encodes x0 at the transmitter's nominal SNR (a system constant)
            outs.append(rx.restore(method, co.y, snr_rx, ib, seed=args.seed, progress=False,
                                   encoder_snr_db=args.snr_db, **params).cpu())
        else:
            outs.append(rx.restore(method, co.y, snr_rx, ib, seed=args.seed, progress=False, **params).cpu())
        t_restore += time.perf_counter() - t0
        snr_rx_all.append(snr_rx)
        bar.update(len(xb))
    bar.close()
    if client is not None:
        client.close()
    xr = torch.cat(outs)
    m = compute_metrics(xr, x, lp)
    snr_rx_all = torch.cat(snr_rx_all)
    if args.save_images:
        from PIL import Image
        d = Path(args.save_images)
        d.mkdir(parents=True, exist_ok=True)
        for img, i in zip(D.to_uint8(xr), ids):
            Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(d / (i.replace("/", "_").replace("#", "_") + ".png"))
    steps = params.get("steps", DEFAULTS.get(method, {}).get("steps", 0)) if method in DIFFUSION_METHODS else 0
    if method in ("sing-zero", "ddnm-avgpool", "sing-inn"):      # prior None: restored in a worker
        from ..zero.ddnm import unet_evals
        cfg = {**DEFAULTS.get(method, {}), **params}
        steps = unet_evals(prior, steps, cfg.get("start", 1.0), cfg.get("travel"))
    return {
        "schema": "sing.eval/1",
        "setup": {
            "dataset": args.data, "split": args.split, "resolution": inf.image_size, "channels": inf.channels,
            "n_images": len(x), "bcr": jscc.config.bcr, "k": jscc.k, "channel": args.channel,
            "csi": csi, "snr_db": args.snr_db,
            "snr_source": "true" if method in BOUND_METHODS else args.snr_source,   # bound: ideal code
            "snr_offset_db": args.snr_offset_db,
            "snr_rx_mean_db": float(snr_rx_all.mean()),
            "method": method, "method_config": {**DEFAULTS.get(method, {}), **params},
            "jscc_model": _rel(jdir), "jscc_model_id": jscc.model_id,
            "prior_model": _rel(prior_path) if prior_path else None,
            "inn_model": _rel(inn_path) if method == "sing-inn" else None,
            "seed": args.seed, "commit": git_commit(), "device": device_name(args.device),
            "torch_threads": torch.get_num_threads(),
            **({"autocast": args.autocast} if args.autocast and prior is not None else {}),
            **({"restored_by": args.worker} if remote else {}),
        },
        "metrics": {k: float(v[torch.isfinite(v)].mean()) if torch.isfinite(v).any() else float("inf")
                    for k, v in m.items()},
        "per_image": [{"id": i, **{k: float(v[j]) for k, v in m.items()},
                       **({"bound": bound_info[j]} if bound_info else {})} for j, i in enumerate(ids)],
        **({"bound": {"lost_fraction": sum(d["lost"] for d in bound_info) / len(bound_info)}}
           if bound_info else {}),
        "timing": {"seconds_per_image": t_restore / len(x), "unet_evals_per_image": steps},
    }


def run(args) -> int:
    res = evaluate(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    mm = res["metrics"]
    print(f"{res['setup']['method']}: PSNR {mm['psnr']:.2f} dB  SSIM {mm['ssim']:.4f}  LPIPS {mm['lpips']:.4f}"
          f"  ({res['setup']['n_images']} images, {res['setup']['channel']} {res['setup']['snr_db']:g} dB,"
          f" BCR {res['setup']['bcr']}) → {out}")
    return 0
