# SPDX-License-Identifier: GPL-3.0-or-later
"""Chaos and fuzz runs of `sing broker` + `sing worker` (real processes, loopback only):
requests sent / answered / lost / duplicated and latency p50 / p99 under kill -9, SIGSTOP, SIGTERM,
a hung compute thread (the worker's test hook), malformed floods, oversize messages and an
impostor worker; then a fuzz of mutated messages across the worker port and both broker ports.

    python sim/worker_chaos.py                       # → sim/results/worker/chaos.json (+ .md)
    python sim/worker_chaos.py --quick --out X.json  # the small version the test suite runs

Each scenario: a broker and two workers (a tiny stand-in JSCC, 16×16 RGB, k = 64: the faults are
about the plumbing, not the model), one load generator on a raw DEALER socket sending `--requests`
valid requests every `--interval-ms`, counting every answer per request id (so a duplicate would
be seen, which WorkerClient hides), and a fault injected into worker A (or the sockets) after a
third of the stream. Lost = no answer at all within the grace period; duplicated = a second
answer for one id. The hung-compute bound is the acceptance line: p99 ≤ 2 × healthy p99 + the
broker's progress deadline.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sing.worker import protocol as P  # noqa: E402

HB_S = 0.2
PROGRESS_S = 2.0


# ---- processes ---------------------------------------------------------------------------------
def free_ep() -> str:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class Procs:
    def __init__(self):
        self.all: list[subprocess.Popen] = []

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        e = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env or {}))
        p = subprocess.Popen([sys.executable, "-m", "sing.cli", *args], cwd=REPO, env=e, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = p.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"sing {args[0]} did not start (rc={p.poll()})")
        self.all.append(p)
        return p

    def close(self):
        for p in self.all:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                p.kill()
            p.wait()
            p.stdout.close()
        self.all.clear()


def tiny_jscc(tmp: Path) -> Path:
    import torch
    from sing.checkpoint import save_model
    from sing.jscc import JSCCConfig, build_jscc
    torch.manual_seed(0)
    m = build_jscc(JSCCConfig.tiny())
    d = tmp / "tiny-jscc"
    save_model(d, m.state_dict(), m.config.to_dict())
    return d


def symbols(k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(k) + 1j * rng.standard_normal(k)
    return (y / np.sqrt(np.mean(np.abs(y) ** 2))).astype(np.complex64)


@dataclass
class Cluster:
    front: str
    back: str
    broker: subprocess.Popen
    a: subprocess.Popen
    b: subprocess.Popen
    curve: object = None            # the client's ClientCurve when the cluster runs CURVE


def start_cluster(procs: Procs, jscc: Path, a_env: dict | None = None, a_args: tuple = (),
                  keys: Path | None = None) -> Cluster:
    front, back = free_ep(), free_ep()
    bargs = ["broker", "--frontend", front, "--backend", back, "--heartbeat-s", str(HB_S),
             "--progress-timeout-s", str(PROGRESS_S), "--request-timeout-s", "30"]
    wcurve: list[str] = []
    curve = None
    if keys is not None:
        from sing.worker.keys import ClientCurve
        bargs += ["--curve-secret", str(keys / "server.key_secret"), "--curve-clients",
                  str(keys / "clients"), "--curve-workers", str(keys / "workers")]
        wcurve = ["--curve-server-public", str(keys / "server.key"), "--curve-secret",
                  str(keys / "worker.key_secret")]
        curve = ClientCurve.from_files(keys / "server.key", keys / "client.key_secret")
    broker = procs.start(*bargs)
    w = lambda name, *extra, env=None: procs.start(
        "worker", "--jscc", str(jscc), "--device", "cpu", "--threads", "1", "--connect", back,
        "--heartbeat-s", str(HB_S), "--max-batch", "4", "--name", name, *wcurve, *extra, env=env)
    a = w("A", *a_args, env=a_env)
    b = w("B")
    c = Cluster(front, back, broker, a, b, curve)
    wait_workers(c, 2)
    return c


def _dealer(endpoint: str, curve=None) -> zmq.Socket:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(s)
    s.connect(endpoint)
    return s


def ping(endpoint: str, curve=None, timeout_ms: int = 3000) -> dict:
    s = _dealer(endpoint, curve)
    try:
        s.send_multipart([b""] + P.control_frames("ping", id="ping"))
        if not s.poll(timeout_ms):
            raise TimeoutError(f"no pong from {endpoint}")
        return json.loads(s.recv_multipart()[-1])["status"]
    finally:
        s.close()


def wait_workers(c: Cluster, n: int, timeout: float = 30.0) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if len(ping(c.front, c.curve)["workers"]) >= n:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the broker never saw {n} workers")


# ---- load --------------------------------------------------------------------------------------
@dataclass
class Load:
    """What one stream of valid requests got back."""
    sent: int = 0
    served: int = 0
    errors: dict = field(default_factory=dict)      # code → count
    lost: int = 0                                   # no answer within the grace period
    duplicated: int = 0                             # answers beyond the first for one id
    latencies_ms: list = field(default_factory=list)
    by_worker: dict = field(default_factory=dict)

    def summary(self) -> dict:
        lat = np.asarray(self.latencies_ms or [np.nan])
        return {"sent": self.sent, "served": self.served, "errors": self.errors, "lost": self.lost,
                "duplicated": self.duplicated, "p50_ms": round(float(np.percentile(lat, 50)), 2),
                "p99_ms": round(float(np.percentile(lat, 99)), 2),
                "max_ms": round(float(np.max(lat)), 2), "by_worker": self.by_worker}


def run_load(endpoint: str, n: int, interval_s: float, fault=None, grace_s: float = 35.0,
             curve=None, tag: str = "q") -> Load:
    """Send n valid requests, every interval_s, on one DEALER; call fault() after n // 3."""
    s = _dealer(endpoint, curve)
    out = Load()
    t_sent: dict[str, float] = {}
    answers: dict[str, int] = {}
    next_t = time.monotonic()
    i = 0
    t_last = None
    while True:
        now = time.monotonic()
        if i < n and now >= next_t:
            rid = f"{tag}-{i}"
            s.send_multipart([b""] + P.request_frames(symbols(64, i), 0.0, "deepjscc", rid,
                                                      meta={"image_id": rid}))
            t_sent[rid] = time.monotonic()
            out.sent += 1
            i += 1
            next_t += interval_s
            if i == n // 3 and fault is not None:
                fault()
            if i == n:
                t_last = time.monotonic()
        if t_last is not None:
            done = len(answers) == n
            if (done and now - t_last > 1.0 and now - max(t_sent.values()) > 1.0) or now - t_last > grace_s:
                break
        if s.poll(max(0, min(50, (next_t - now) * 1e3)) if i < n else 50):
            while True:
                try:
                    frames = s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                h = json.loads(frames[frames.index(b"") + 1])
                rid = h.get("id")
                if rid not in t_sent:
                    continue
                answers[rid] = answers.get(rid, 0) + 1
                if answers[rid] > 1:
                    out.duplicated += 1
                    continue
                out.latencies_ms.append((time.monotonic() - t_sent[rid]) * 1e3)
                if h["type"] == "reply":
                    out.served += 1
                    out.by_worker[h.get("worker")] = out.by_worker.get(h.get("worker"), 0) + 1
                else:
                    out.errors[h.get("code")] = out.errors.get(h.get("code"), 0) + 1
    out.lost = n - len(answers)
    s.close()
    return out


# ---- faults ------------------------------------------------------------------------------------
def flood_malformed(endpoint: str, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    s = _dealer(endpoint)
    for _ in range(n):
        s.send_multipart([b""] + [rng.bytes(int(rng.integers(0, 3000))) for _ in range(int(rng.integers(1, 4)))],
                         zmq.NOBLOCK)
    s.close()


def flood_oversize(endpoint: str) -> None:
    s = _dealer(endpoint)
    s.send_multipart([b"", b"x" * (P.MAX_REQUEST_BYTES + 1)])                 # over ZMQ_MAXMSGSIZE
    hdr = P.request_frames(symbols(64, 0), 0.0, "deepjscc", "oversize")[0]
    s2 = _dealer(endpoint)
    s2.send_multipart([b"", hdr] + [b"\0" * (P.MAX_REQUEST_BYTES - 64)] * 64)  # many frames
    time.sleep(0.2)
    s.close()
    s2.close()


def impostor(c: Cluster, keys: Path, procs: Procs, jscc: Path) -> None:
    """A worker process holding an authorised *client* key tries to join the worker port."""
    procs.start("worker", "--jscc", str(jscc), "--device", "cpu", "--threads", "1", "--connect",
                c.back, "--heartbeat-s", str(HB_S), "--max-batch", "64", "--name", "impostor",
                "--curve-server-public", str(keys / "server.key"), "--curve-secret",
                str(keys / "client.key_secret"))


def scenarios(procs: Procs, jscc: Path, tmp: Path) -> dict:
    """name → (cluster factory, fault(cluster) or None)."""
    def keys() -> Path:
        from sing.worker.keys import CLIENTS, WORKERS, write_keypair, write_role
        d = tmp / "keys"
        if not (d / "server.key").exists():
            write_keypair(d, "server")
            write_role(d, CLIENTS, "client")
            write_role(d, WORKERS, "worker")
        return d
    plain = lambda: start_cluster(procs, jscc)
    return {
        "healthy": (plain, None),
        "kill9": (plain, lambda c: os.kill(c.a.pid, signal.SIGKILL)),
        "sigstop": (plain, lambda c: os.kill(c.a.pid, signal.SIGSTOP)),
        "sigterm": (plain, lambda c: os.kill(c.a.pid, signal.SIGTERM)),
        "hung_compute": (lambda: start_cluster(procs, jscc, a_env={"SING_WORKER_TEST_HANG_S": "600"},
                                               a_args=("--stuck-s", "1000")), None),
        "malformed_flood": (plain, lambda c: (flood_malformed(c.front, 500),
                                              flood_malformed(c.back, 500, seed=2))),
        "oversize": (plain, lambda c: flood_oversize(c.front)),
        "impostor_worker": (lambda: start_cluster(procs, jscc, keys=keys()),
                            lambda c: impostor(c, keys(), procs, jscc)),
    }


# ---- fuzz --------------------------------------------------------------------------------------
def _mutations(rng: np.random.Generator, i: int) -> list[bytes]:
    """One mutated message body (after the DEALER's b'' delimiter, which may itself be mutated)."""
    base = json.loads(P.request_frames(symbols(64, i), 0.0, "deepjscc", f"fz-{i}")[0])
    payload = symbols(64, i).tobytes()
    kind = int(rng.integers(0, 10))
    weird = [True, 1.0, "1", None, [], {}, -1, 2**63, 10**30, "x" * 200, [[[[1]]]], 1e308, -0.0]
    if kind == 0:                                     # one field replaced by something odd
        key = list(base)[int(rng.integers(0, len(base)))]
        base[key] = weird[int(rng.integers(0, len(weird)))]
        return [b"", json.dumps(base).encode(), payload]
    if kind == 1:                                     # bit flips in the header
        h = bytearray(json.dumps(base).encode())
        for _ in range(int(rng.integers(1, 6))):
            j = int(rng.integers(0, len(h)))
            h[j] ^= 1 << int(rng.integers(0, 8))
        return [b"", bytes(h), payload]
    if kind == 2:                                     # truncated header or payload
        h = json.dumps(base).encode()
        return [b"", h[:int(rng.integers(0, len(h)))], payload[:int(rng.integers(0, len(payload)))]]
    if kind == 3:                                     # routing frames before the delimiter
        return [b"r"] * int(rng.integers(1, 7)) + [b"", json.dumps(base).encode(), payload]
    if kind == 4:                                     # extra or missing frames
        return [b"", json.dumps(base).encode()] + [payload] * int(rng.integers(0, 12))
    if kind == 5:                                     # another message type
        base["type"] = ["ping", "pong", "ready", "heartbeat", "disconnect", "reply", "error",
                        "nope"][int(rng.integers(0, 8))]
        base["capacity"] = weird[int(rng.integers(0, len(weird)))]
        base["worker"] = "evil\n" * 3
        return [b"", json.dumps(base).encode(), payload]
    if kind == 6:                                     # meta / params abuse
        base["meta"] = {f"k{j}": j for j in range(int(rng.integers(0, 40)))} | {"k": 10**19}
        base["params"] = {"steps": weird[int(rng.integers(0, len(weird)))]}
        return [b"", json.dumps(base).encode(), payload]
    if kind == 7:                                     # deep JSON
        d = int(rng.integers(10, 5000))
        return [b"", b"[" * d + b"]" * d]
    if kind == 8:                                     # random bytes
        return [b""] + [rng.bytes(int(rng.integers(0, 3000))) for _ in range(int(rng.integers(1, 4)))]
    return [b"", json.dumps(base).encode(), payload]  # a valid request


def fuzz(n: int, jscc: Path, procs: Procs) -> dict:
    """n mutated messages spread over a direct worker's port and the broker's two ports."""
    direct = free_ep()
    w = procs.start("worker", "--jscc", str(jscc), "--device", "cpu", "--threads", "1", "--bind", direct)
    c = start_cluster(procs, jscc)
    pids = {"worker_direct": w.pid, "broker": c.broker.pid, "worker_A": c.a.pid, "worker_B": c.b.pid}
    rss0 = {k: psutil.Process(p).memory_info().rss for k, p in pids.items()}
    rng = np.random.default_rng(0)
    ports = {"worker": direct, "broker_clients": c.front, "broker_workers": c.back}
    socks = {k: _dealer(e) for k, e in ports.items()}
    answers: dict[str, int] = {}
    sent = {k: 0 for k in ports}
    t0 = time.monotonic()

    routed_to_fuzzer: dict[str, int] = {}

    def drain(timeout_ms: int = 0) -> None:
        """Count answers (reply / error / pong) per fuzz id on the client-side sockets. On the
        worker port the fuzzer may have registered itself as a worker (a fuzzed `ready`; loopback
        without CURVE admits anyone): requests the broker routes to it are counted apart."""
        for port, s in socks.items():
            while s.poll(timeout_ms):
                frames = s.recv_multipart()
                if b"" not in frames[:P.MAX_ROUTING + 1]:
                    continue
                try:
                    h = json.loads(frames[frames.index(b"") + 1])
                except (ValueError, IndexError):
                    continue
                rid = h.get("id") if isinstance(h, dict) else None
                if not (isinstance(rid, str) and rid.startswith("fz-")):
                    continue
                if port == "broker_workers":
                    routed_to_fuzzer[rid] = routed_to_fuzzer.get(rid, 0) + 1
                elif h.get("type") in ("reply", "error", "pong"):
                    answers[rid] = answers.get(rid, 0) + 1
                timeout_ms = 0
    names = list(ports)
    for i in range(n):
        port = names[i % 3]
        try:
            socks[port].send_multipart(_mutations(rng, i), zmq.NOBLOCK)
            sent[port] += 1
        except zmq.Again:
            drain(100)
        if i % 50 == 0:
            drain()
    time.sleep(1.0)
    drain(500)
    alive = {k: psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
             for k, p in pids.items()}
    growth = {k: round((psutil.Process(p).memory_info().rss - rss0[k]) / 2**20, 1)
              for k, p in pids.items() if alive[k]}
    for s in socks.values():
        s.close()
    t_after = time.monotonic()
    normal = {}
    for name, e in (("worker", direct), ("broker", c.front)):
        one = run_load(e, 3, 0.01, grace_s=15, tag=f"after-{name}")
        normal[name] = one.served == 3
    return {"messages": n, "sent_per_port": sent, "seconds": round(t_after - t0, 1),
            "answered_ids": len(answers), "answered_more_than_once": sum(v > 1 for v in answers.values()),
            "requests_routed_to_the_fuzzer_as_worker": len(routed_to_fuzzer),
            "processes_alive": alive, "rss_growth_mib": growth,
            "normal_request_served_after": normal}


# ---- driver ------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=150, help="valid requests per scenario")
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--fuzz", type=int, default=10000, help="fuzz messages in all (0: none)")
    ap.add_argument("--quick", action="store_true", help="45 requests per scenario, 1,500 fuzz messages")
    ap.add_argument("--only", nargs="+", default=None, help="run only these scenarios")
    ap.add_argument("--out", default="sim/results/worker/chaos.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.fuzz = 45, min(args.fuzz, 1500)
    result = {"schema": "sing.worker.chaos/1", "command": "python sim/worker_chaos.py " + " ".join(argv or sys.argv[1:]),
              "setup": {"requests_per_scenario": args.requests, "interval_ms": args.interval_ms,
                        "heartbeat_s": HB_S, "broker_progress_timeout_s": PROGRESS_S,
                        "workers": 2, "model": "tiny stand-in JSCC (16×16 RGB, k = 64)",
                        "cpus": os.cpu_count(), "load_avg_start": list(os.getloadavg())},
              "scenarios": {}}
    with tempfile.TemporaryDirectory(prefix="sing-chaos-") as tmp:
        tmp = Path(tmp)
        jscc = tiny_jscc(tmp)
        procs = Procs()
        try:
            for name, (make, fault) in scenarios(procs, jscc, tmp).items():
                if args.only and name not in args.only:
                    continue
                c = make()
                load = run_load(c.front, args.requests, args.interval_ms / 1e3,
                                fault=(lambda c=c, f=fault: f(c)) if fault else None, curve=c.curve)
                result["scenarios"][name] = load.summary()
                print(name, json.dumps(result["scenarios"][name]), flush=True)
                procs.close()
            if args.fuzz:
                result["fuzz"] = fuzz(args.fuzz, jscc, procs)
                print("fuzz", json.dumps(result["fuzz"]), flush=True)
        finally:
            procs.close()
    result["acceptance"] = acceptance(result)
    result["load_avg_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(render_markdown(result, str(out)) + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0 if all(v["holds"] for v in result["acceptance"].values()) else 1


def acceptance(r: dict) -> dict:
    sc = r["scenarios"]
    out = {}
    if sc:
        out["no_valid_request_lost_or_duplicated"] = {
            "holds": all(s["lost"] == 0 and s["duplicated"] == 0 for s in sc.values()),
            "lost": {k: s["lost"] for k, s in sc.items()},
            "duplicated": {k: s["duplicated"] for k, s in sc.items()}}
        out["every_valid_request_served"] = {
            "holds": all(s["served"] == s["sent"] for s in sc.values()),
            "errors": {k: s["errors"] for k, s in sc.items() if s["errors"]}}
    if "healthy" in sc and "hung_compute" in sc:
        bound = 2 * sc["healthy"]["p99_ms"] + PROGRESS_S * 1e3
        out["hung_worker_p99_bound"] = {"holds": sc["hung_compute"]["p99_ms"] <= bound,
                                        "p99_ms": sc["hung_compute"]["p99_ms"], "bound_ms": round(bound, 1),
                                        "rule": "p99 ≤ 2 × healthy p99 + broker progress deadline"}
    if "impostor_worker" in sc:
        out["impostor_got_no_request"] = {"holds": "impostor" not in sc["impostor_worker"]["by_worker"],
                                          "by_worker": sc["impostor_worker"]["by_worker"]}
    fz = r.get("fuzz")
    if fz:
        out["fuzz"] = {"holds": (all(fz["processes_alive"].values()) and fz["answered_more_than_once"] == 0
                                 and all(fz["normal_request_served_after"].values())
                                 and max(fz["rss_growth_mib"].values()) <= 50),
                       "messages": fz["messages"], "max_rss_growth_mib": max(fz["rss_growth_mib"].values())}
    return out


def render_markdown(r: dict, source: str) -> str:
    lines = [f"# Worker chaos and fuzz ({source})", "",
             f"Generated from `{source}`; made by `{r['command']}`. {r['setup']['workers']} workers "
             f"behind one broker, {r['setup']['requests_per_scenario']} valid requests per scenario "
             f"every {r['setup']['interval_ms']} ms, fault on worker A after a third; heartbeat "
             f"{r['setup']['heartbeat_s']} s, broker progress deadline "
             f"{r['setup']['broker_progress_timeout_s']} s; {r['setup']['cpus']} CPUs.", "",
             "| scenario | sent | served | errors | lost | duplicated | p50 ms | p99 ms | max ms | served by |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in r["scenarios"].items():
        lines.append(f"| {name} | {s['sent']} | {s['served']} | {s['errors'] or '–'} | {s['lost']} | "
                     f"{s['duplicated']} | {s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} | {s['by_worker']} |")
    fz = r.get("fuzz")
    if fz:
        lines += ["", f"Fuzz: {fz['messages']} mutated messages ({fz['sent_per_port']}) in {fz['seconds']} s; "
                      f"ids answered more than once: {fz['answered_more_than_once']}; processes alive: "
                      f"{fz['processes_alive']}; RSS growth MiB: {fz['rss_growth_mib']}; a normal request "
                      f"served right after: {fz['normal_request_served_after']}."]
    lines += ["", "| acceptance | holds | details |", "|---|---|---|"]
    for k, v in r["acceptance"].items():
        lines.append(f"| {k} | {'yes' if v['holds'] else '**no**'} | "
                     f"{json.dumps({a: b for a, b in v.items() if a != 'holds'}, ensure_ascii=False)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
