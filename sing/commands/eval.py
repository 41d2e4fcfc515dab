# SPDX-License-Identifier: GPL-3.0-or-later
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
DECODERS = ("mse", "perceptual")   # the shipped DeepJSCC models per data/BCR (sing.paths.model_dir_for)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..methods.registry import METHODS, REGISTRY, all_params
    p.add_argument("--method", default="deepjscc", choices=METHODS)
    p.add_argument("--data", default="natural", help="natural | natural-256 | natural-unseen | fmnist | fmnist-rgb64 | "
                   "natural-gray32 | folder:PATH | folder@SIZE:PATH (images of another size than the "
                   "model's run at their size: the shipped 64×64 models on natural-256, say)")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    p.add_argument("--n-images", type=int, default=64)
    p.add_argument("--bcr", default="1/48")
    p.add_argument("--snr-db", type=float, default=0.0)
    p.add_argument("--channel", default="awgn", choices=("awgn", "rayleigh"))
    p.add_argument("--snr-source", default="true", choices=("true", "estimated"),
                   help="SNR given to the receiver: the true (effective) SNR or the pilot estimate")
    p.add_argument("--n-pilots", type=int, default=16)
    p.add_argument("--decoder", default=None, choices=DECODERS,
                   help="which shipped DeepJSCC model (encoder + decoder) for data/BCR the method runs on: "
                   "mse or perceptual (trained on MSE + LPIPS); default: the method's own (registry: "
                   "deepjscc-perceptual → perceptual, every other → mse). SING-Zero then uses that model's "
                   "calibration, SING-INN its INN (<model dir>-inn)")
    p.add_argument("--jscc", default=None, help="JSCC model dir: any other decoder folder (default: the "
                   "shipped one for data/BCR and --decoder)")
    p.add_argument("--prior", default=None, help="prior dir (default: the shipped one for the data)")
    p.add_argument("--calibration", default=None, help="SING-Zero calibration file (default: next to the JSCC)")
    p.add_argument("--inn", default=None, help="SING-INN model dir")
    # one flag per method parameter (sing/methods/registry.py); unset = the method's default
    for prm in (q for q in all_params().values() if q.cli):
        users = ", ".join(n for n, m in REGISTRY.items() if prm.name in {q.name for q in m.params})
        p.add_argument("--" + prm.name.replace("_", "-"), default=None, choices=prm.choices or None,
                       type=int if prm.kind == "pair" else prm.kind, nargs=2 if prm.kind == "pair" else None,
                       help=f"{users}: {prm.help}")
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
    p.add_argument("--lpips-extra", default=None, choices=("vgg",),
                   help="also score LPIPS with this backbone (per image and mean, as lpips_<net>): a perceptual "
                   "metric nothing here was trained on (the perceptual DeepJSCC's loss is LPIPS-Alex, the "
                   "`lpips` column)")
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


def load_receiver_for(args, inf, method, remote: bool):
    """The DeepJSCC model (--jscc or the shipped one for the data, BCR and method; checked against
    both) and the parts the method needs or uses (registry), loaded unless a worker restores them:
    (Receiver, {part: path})."""
    from fractions import Fraction
    from ..methods import load_receiver
    from ..paths import model_dir_for, parts_of, prior_dir_for
    decoder = decoder_of(args, method)
    jdir = Path(args.jscc) if args.jscc else model_dir_for(args.data, args.bcr, decoder == "perceptual")
    default = {"prior": prior_dir_for(args.data), **parts_of(jdir)}      # --prior/--calibration/--inn win
    paths = {"jscc": jdir, **{k: Path(getattr(args, k) or v) for k, v in default.items()
                              if k in method.needs + method.uses}}
    make = {"calibration": f"sing calibrate --jscc {jdir} --out {paths.get('calibration')}",
            "inn": f"sing train-inn --jscc {jdir} --out {paths.get('inn')}"}
    for part in (q for q in method.needs if q in make and not paths[q].exists()):
        what = {"calibration": "a SING-Zero calibration", "inn": "a SING-INN model"}[part]
        raise InputError(f"{method.name} needs {what} made for the JSCC model {jdir}, and {paths[part]} does "
                         f"not exist: make one (`{make[part]}`) or pass --{part} DIR")
    load = {} if remote else paths
    rx = load_receiver([jdir], load.get("prior"), load.get("calibration"), load.get("inn"),
                       device=args.device, autocast=args.autocast)
    cfg = rx.model().config
    if cfg.channels != inf.channels:
        raise InputError(f"data {args.data} is {inf.channels}×{inf.image_size}² but model {jdir} takes "
                         f"{cfg.channels}-channel images")
    if remote and cfg.image_size != inf.image_size:
        raise InputError(f"data {args.data} is {inf.image_size}×{inf.image_size}, not the model's native "
                         f"{cfg.image_size}×{cfg.image_size}: restore it in this process (drop --worker)")
    if Fraction(cfg.bcr) != Fraction(args.bcr):
        raise InputError(f"model {jdir} is for BCR {cfg.bcr}, not {args.bcr}")
    return rx, paths


def decoder_of(args, method) -> str | None:
    """The named decoder a run uses (`--decoder`, else the method's own), None with `--jscc DIR`."""
    decoder = getattr(args, "decoder", None)
    if decoder is not None and args.jscc:
        raise InputError(f"give --decoder {decoder} or --jscc {args.jscc}, not both: --decoder names a "
                         f"shipped model, --jscc any model folder")
    if decoder is not None and method.name.startswith("deepjscc") and decoder != method.jscc:
        raise InputError(f"{method.name} is the {method.jscc} decoder itself; --decoder {decoder} contradicts it "
                         f"(use --method {'deepjscc-perceptual' if decoder == 'perceptual' else 'deepjscc'})")
    return None if args.jscc else (decoder or method.jscc)


def method_params(args, method) -> dict:
    """The method parameters given on the command line (each must be one of the method's)."""
    from ..methods.registry import all_params
    params, own = {}, {p.name for p in method.params}
    for name in (p.name for p in all_params().values() if p.cli):
        v = getattr(args, name)
        if v is not None:
            if name not in own:
                raise InputError(f"--{name.replace('_', '-')} does not apply to {method.name}")
            params[name] = v
    return params


def transmit(jscc, x: torch.Tensor, ids, ch, seed: int, snr_db: float, device: str = "cpu"):
    """The images x through the transmitter (the JSCC encoder at its nominal `snr_db`) and the channel
    `ch`, image i with its own seeded channel draw (`channel_generator(seed, ids[i])`): the same
    received symbols for an image whatever its batch. Returns the channel's output (symbols y, SNRs)."""
    from ..channel import apply_channel, channel_generator
    with torch.no_grad():
        z = jscc.encode(x.to(device), snr_db).cpu()
    return apply_channel(z, ch, [channel_generator(seed, i) for i in ids])


def restore_all(args, method, jscc, rx, client, ch, x, ids, params) -> tuple[torch.Tensor, torch.Tensor, float, list]:
    """Encode, pass the channel `ch` and restore every image, batch by batch: (restored images, the
    SNR given to the receiver per image, restoration seconds, per-image bound info)."""
    from tqdm import tqdm
    from ..methods import bound
    # the DPS data term encodes x0 at the transmitter's nominal SNR (a system constant)
    extra = {"encoder_snr_db": args.snr_db} if "encoder_snr_db" in {p.name for p in method.params} else {}
    outs, snr_rx_all, t_restore, bound_info = [], [], 0.0, []
    hw = (int(x.shape[2]), int(x.shape[3]))
    # images of another size than the model's: the decoder and the methods are told it (any size,
    # docs/ALGORITHMS.md §2–3); at the native size the call is exactly as before
    size = {} if hw == (jscc.config.image_size, jscc.config.image_size) else {"shape": hw}
    bar = tqdm(total=len(x), desc=f"eval {method.name} {args.channel} {args.snr_db:g} dB", disable=args.no_progress)
    for i in range(0, len(x), args.batch):
        xb, ib = x[i:i + args.batch], ids[i:i + args.batch]
        co = transmit(jscc, xb, ib, ch, args.seed, args.snr_db, args.device)
        snr_rx = (co.snr_db if args.snr_source == "estimated" else co.snr_true_db) + args.snr_offset_db
        t0 = time.perf_counter()
        if method.input == "original":
            # a bound, not a receiver: the codec sees the original images and the ideal code runs at
            # the true effective SNR of each image's channel realisation (|h|²·SNR under Rayleigh)
            snr_rx = co.snr_true_db
            rec, info = bound(method.name, xb, jscc.k_at(*hw), snr_rx, **params)
            outs.append(rec.cpu())
            bound_info += info
        elif client is not None:
            outs.append(_restore_remote(client, method.name, co.y, snr_rx, ib, jscc, args,
                                        {**params, **extra, "seed": args.seed}))
        else:
            outs.append(rx.restore(method.name, co.y, snr_rx, ib, seed=args.seed, progress=False,
                                   **size, **extra, **params).cpu())
        t_restore += time.perf_counter() - t0
        snr_rx_all.append(snr_rx)
        bar.update(len(xb))
    bar.close()
    return torch.cat(outs), torch.cat(snr_rx_all), t_restore, bound_info


def save_images(folder: str, xr: torch.Tensor, ids) -> None:
    from PIL import Image
    from .. import data as D
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    for img, i in zip(D.to_uint8(xr), ids):
        Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(d / (i.replace("/", "_").replace("#", "_") + ".png"))


def evaluate(args) -> dict:
    from .. import data as D
    from ..channel import ChannelConfig
    from ..methods import get
    from ..metrics import compute_metrics, load_lpips

    method = get(args.method)
    inf = D.info(args.data)  # unknown data set names fail first, listing the choices
    remote = bool(args.worker) and method.input != "original"
    rx, paths = load_receiver_for(args, inf, method, remote)
    jscc = rx.model()
    params = method_params(args, method)
    config = method.resolve(params)
    x, ids = D.load_split(args.data, args.split, n=args.n_images, progress=not args.no_progress)
    csi = "pilot" if (args.snr_source == "estimated" or args.channel == "rayleigh") else "perfect"
    ch = ChannelConfig(kind=args.channel, snr_db=args.snr_db, csi=csi, n_pilots=args.n_pilots)
    lp = load_lpips("alex", device=args.device)
    client = _worker_client(args) if remote else None
    try:
        xr, snr_rx_all, t_restore, bound_info = restore_all(args, method, jscc, rx, client, ch, x, ids, params)
    finally:
        if client is not None:
            client.close()
    m = compute_metrics(xr, x, lp)
    if args.lpips_extra:
        m[f"lpips_{args.lpips_extra}"] = load_lpips(args.lpips_extra, device=args.device)(xr, x).float().cpu()
    if args.save_images:
        save_images(args.save_images, xr, ids)
    # the prior's own schedule when loaded (else restored in a worker: T = 1000)
    unet = method.evaluations(params, rx.prior.num_train_timesteps if rx.prior else 1000).unet_forward
    return {
        "schema": "sing.eval/1",
        "setup": {
            "dataset": args.data, "split": args.split, "resolution": inf.image_size, "channels": inf.channels,
            "n_images": len(x), "bcr": jscc.config.bcr, "k": jscc.k_at(x.shape[2], x.shape[3]),
            "channel": args.channel,
            "csi": csi, "snr_db": args.snr_db,
            "snr_source": "true" if method.input == "original" else args.snr_source,   # bound: ideal code
            "snr_offset_db": args.snr_offset_db,
            "snr_rx_mean_db": float(snr_rx_all.mean()),
            "method": method.name, "method_config": config,
            "decoder": decoder_of(args, method),
            "jscc_model": _rel(paths["jscc"]), "jscc_model_id": jscc.model_id,
            "prior_model": _rel(paths["prior"]) if "prior" in paths else None,
            "inn_model": _rel(paths["inn"]) if "inn" in paths else None,
            "seed": args.seed, "commit": git_commit(), "device": device_name(args.device),
            "torch_threads": torch.get_num_threads(),
            **({"autocast": args.autocast} if args.autocast and rx.prior is not None else {}),
            **({"restored_by": args.worker} if remote else {}),
        },
        "metrics": {k: float(v[torch.isfinite(v)].mean()) if torch.isfinite(v).any() else float("inf")
                    for k, v in m.items()},
        "per_image": [{"id": i, **{k: float(v[j]) for k, v in m.items()},
                       **({"bound": bound_info[j]} if bound_info else {})} for j, i in enumerate(ids)],
        **({"bound": {"lost_fraction": sum(d["lost"] for d in bound_info) / len(bound_info)}}
           if bound_info else {}),
        "timing": {"seconds_per_image": t_restore / len(x), "unet_evals_per_image": unet},
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
