# SPDX-License-Identifier: GPL-3.0-or-later
"""Multi-process training through Hugging Face accelerate, shared by `sing train-prior` and
`sing train-inn`.

- On GPUs/nodes: launch the same command with `accelerate launch -m sing.cli train-… …` (or
  torchrun); each process reads its rank from the environment.
- Locally on CPU: `--num-processes N` re-runs the command under `torch.distributed.run` with N
  processes (`spawn_local`), the path the tests exercise with 2 CPU processes.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys


def spawn_local(command: str, num_processes: int, threads: int) -> int:
    """Re-run `sing COMMAND …` (this process's arguments, without --num-processes) under
    torch.distributed.run with `num_processes` CPU processes of `threads` threads each."""
    clean, args = [], iter(sys.argv[1:])
    for a in args:                  # drop "--num-processes N" and "--num-processes=N"
        if a == "--num-processes":
            next(args, None)
        elif not a.startswith("--num-processes="):
            clean.append(a)
    if command not in clean:
        clean = [command] + clean
    if "--cpu" not in clean:
        clean.append("--cpu")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={num_processes}", "-m", "sing.cli"] + clean
    print("spawning:", " ".join(shlex.quote(c) for c in cmd), flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, threads)))
    return subprocess.call(cmd, env=env)


def is_spawned_rank() -> bool:
    """True inside a process started by a distributed launcher (torchrun, accelerate launch)."""
    return "WORLD_SIZE" in os.environ


def accelerator(cpu: bool, mixed_precision: str = "no"):
    """An accelerate.Accelerator. accelerate keeps one process-wide state, so a second in-process
    run with other settings (tests, notebooks) would be refused: a single-process run starts from a
    clean state (a launched rank keeps the launcher's)."""
    from accelerate import Accelerator
    if not is_spawned_rank():
        from accelerate.state import AcceleratorState
        if hasattr(AcceleratorState, "_reset_state"):
            AcceleratorState._reset_state()
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision)
