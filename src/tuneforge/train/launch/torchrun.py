"""Relaunch `tuneforge train` under torchrun when a run spans several devices or machines.

The parent process validates the configuration (errors appear once, before any process is spawned), then
runs `python -m torch.distributed.run ... -m tuneforge train <same arguments>`; every worker trains as a
normal run whose rank comes from torchrun. We write no distributed machinery: torchrun starts, watches and
tears down the workers (a failed rank stops the others), the Trainer / accelerate set up the process group.

Environment variables, as LLaMA-Factory's launcher reads them:
    FORCE_TORCHRUN=1        launch under torchrun even with one (or no) accelerator
    NPROC_PER_NODE          processes on this machine (default: the visible accelerators, 1 on CPU)
    NNODES, NODE_RANK       machines in the run, and this machine's index (0 .. NNODES-1)
    MASTER_ADDR, MASTER_PORT  where node 0 listens (default 127.0.0.1 and a free port, one machine only)
    RDZV_ID [MIN_NNODES MAX_NNODES] [MAX_RESTARTS]   elastic launch: c10d rendezvous, nodes may join/leave
Names users often try instead are mapped where the meaning is clear (LLaMA-Factory's docs say `RANK` where
its launcher reads `NODE_RANK`, and its multi-node runs then hang on node 1): see ALIASES and plan_launch.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ...errors import ConfigError
from ...runtime import read_runtime, runtime
from .signals import AGENT_SIGNALS, die_with_launcher, forward_sigint_to_workers

logger = logging.getLogger(__name__)

# Set in the workers we start: they skip the parent's checks and never relaunch (runtime().launched_by_tuneforge).
LAUNCHED_ENV = "TUNEFORGE_LAUNCHED"
# The launching process's pid, for its workers: they die with it (launch/signals.py).
LAUNCHER_PID_ENV = "TUNEFORGE_LAUNCHER_PID"
TRUE_VALUES = ("1", "true", "y", "yes")

# Canonical name -> other names users set for it (read only when the canonical one is absent).
ALIASES = {
    "NODE_RANK": ("RANK", "NODE_ID", "GROUP_RANK"),
    "NNODES": ("NUM_NODES",),
    "NPROC_PER_NODE": ("GPUS_PER_NODE", "NPROC"),
}


@dataclass(frozen=True)
class LaunchPlan:
    """The torchrun command line for this machine, and what was read to make it."""

    nproc_per_node: int
    nnodes: str  # "2", or "1:4" for an elastic range
    node_rank: int
    master_addr: str
    master_port: int
    rdzv_id: str | None = None
    max_restarts: int = 0
    notes: list[str] = field(default_factory=list)  # how user-set names were read (logged before launching)

    def torchrun_args(self) -> list[str]:
        args = [f"--nnodes={self.nnodes}", f"--nproc-per-node={self.nproc_per_node}"]
        if self.rdzv_id is not None:
            return args + [f"--rdzv-id={self.rdzv_id}", "--rdzv-backend=c10d",
                           f"--rdzv-endpoint={self.master_addr}:{self.master_port}",
                           f"--max-restarts={self.max_restarts}"]
        return args + [f"--node-rank={self.node_rank}", f"--master-addr={self.master_addr}",
                       f"--master-port={self.master_port}"]

    def torchrun_argv(self, train_args: Sequence[str]) -> list[str]:
        """torchrun's arguments for running `tuneforge train <train_args>` in every worker."""
        return [*self.torchrun_args(), "-m", "tuneforge", "train", *train_args]

    def command(self, train_args: Sequence[str]) -> list[str]:
        """The same launch as a shell command line (what the log shows)."""
        return [sys.executable, "-m", "torch.distributed.run", *self.torchrun_argv(train_args)]


def is_launched_worker(env: Mapping[str, str]) -> bool:
    """Already one process of a launched run (torchrun's, deepspeed's or accelerate's launcher)?"""
    return "TORCHELASTIC_RUN_ID" in env or all(name in env for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))


def is_our_worker(env: Mapping[str, str]) -> bool:
    """A worker `tuneforge train` launched (its parent already checked the configuration)."""
    return read_runtime(env).launched_by_tuneforge and is_launched_worker(env)


def wants_torchrun(env: Mapping[str, str], device_count: int, deepspeed: bool = False) -> bool:
    """LLaMA-Factory's rule (FORCE_TORCHRUN, or more than one device), plus: asking for several processes or
    nodes is asking for torchrun (LLaMA-Factory would silently train in one process), and DeepSpeed always
    runs under a launcher (outside one it looks for MPI and fails)."""
    if is_launched_worker(env):
        return False
    if env.get("FORCE_TORCHRUN", "").lower() in TRUE_VALUES or device_count > 1 or deepspeed:
        return True
    return any(_int(env, name, 1) > 1 for name in ("NPROC_PER_NODE", "NNODES", *ALIASES["NPROC_PER_NODE"],
                                                   *ALIASES["NNODES"]))


def plan_launch(env: Mapping[str, str], device_count: int, free_port: int | None = None) -> LaunchPlan:
    """Read the launch variables; every inconsistency is reported at once as a ConfigError."""
    problems: list[str] = []
    notes: list[str] = []
    values = {name: _canonical(env, name, problems, notes) for name in ALIASES}

    nnodes = _to_int("NNODES", values["NNODES"], 1, problems)
    nproc = _to_int("NPROC_PER_NODE", values["NPROC_PER_NODE"], max(device_count, 1), problems)
    node_rank = _to_int("NODE_RANK", values["NODE_RANK"], 0, problems)
    if nproc < 1:
        problems.append(f"NPROC_PER_NODE={nproc}: give at least 1 process per machine.")
    if device_count and nproc > device_count:
        problems.append(f"NPROC_PER_NODE={nproc} but only {device_count} devices are visible on this machine; "
                        f"use NPROC_PER_NODE<={device_count} (one process per device).")
    if nnodes < 1:
        problems.append(f"NNODES={nnodes}: give the number of machines (1 or more).")
    if not 0 <= node_rank < max(nnodes, 1) and env.get("MIN_NNODES") is None:
        problems.append(f"NODE_RANK={node_rank} is not in 0..{nnodes - 1} (NNODES={nnodes}); number the machines "
                        "0 (the one at MASTER_ADDR) to NNODES-1.")

    world_size = env.get("WORLD_SIZE")
    if world_size is not None and world_size != str(nnodes * nproc):
        problems.append(f"WORLD_SIZE={world_size} is set, but torchrun computes it per run as NNODES x "
                        f"NPROC_PER_NODE = {nnodes} x {nproc}; unset WORLD_SIZE and set NNODES (machines) and "
                        "NPROC_PER_NODE (processes per machine).")
    if "LOCAL_RANK" in env:
        problems.append(f"LOCAL_RANK={env['LOCAL_RANK']} is set, but torchrun gives each process its own "
                        "LOCAL_RANK; unset it.")

    rdzv_id = env.get("RDZV_ID")
    min_nnodes, max_nnodes = env.get("MIN_NNODES"), env.get("MAX_NNODES")
    nnodes_arg = str(nnodes)
    if (min_nnodes is None) != (max_nnodes is None):
        problems.append("MIN_NNODES and MAX_NNODES go together (an elastic range of machines); set both or neither.")
    elif min_nnodes is not None:
        if rdzv_id is None:
            problems.append("MIN_NNODES/MAX_NNODES need RDZV_ID (an elastic launch with c10d rendezvous); set "
                            "RDZV_ID to any job name shared by all machines.")
        low = _to_int("MIN_NNODES", min_nnodes, 1, problems)
        high = _to_int("MAX_NNODES", max_nnodes, 1, problems)
        if not 1 <= low <= high:
            problems.append(f"MIN_NNODES={min_nnodes} and MAX_NNODES={max_nnodes} must satisfy "
                            "1 <= MIN_NNODES <= MAX_NNODES.")
        nnodes_arg = f"{low}:{high}"
    multi_node = nnodes > 1 or (min_nnodes is not None and max_nnodes not in (None, "1"))

    master_addr = env.get("MASTER_ADDR")
    master_port = env.get("MASTER_PORT")
    if multi_node and (master_addr is None or master_port is None):
        missing = " and ".join(name for name, value in (("MASTER_ADDR", master_addr), ("MASTER_PORT", master_port))
                               if value is None)
        problems.append(f"a run over several machines needs {missing}: the address and a free port of node 0, "
                        "the same on every machine (a default would differ between machines and the run "
                        "would hang).")
    port = _to_int("MASTER_PORT", master_port, 0, problems) if master_port is not None else None
    max_restarts = _to_int("MAX_RESTARTS", env.get("MAX_RESTARTS"), 0, problems)
    if problems:
        raise ConfigError(problems, "launch environment")
    return LaunchPlan(
        nproc_per_node=nproc, nnodes=nnodes_arg, node_rank=node_rank,
        master_addr=master_addr or "127.0.0.1",
        master_port=port if port is not None else (free_port or find_free_port()),
        rdzv_id=rdzv_id, max_restarts=max_restarts, notes=notes)


def relaunch_under_torchrun(train_args: Sequence[str], deepspeed: bool = False) -> int | None:
    """Run `tuneforge train <train_args>` under torchrun and return its exit code; None: train here."""
    env = dict(os.environ)
    if is_launched_worker(env):
        if is_our_worker(env) and env.get(LAUNCHER_PID_ENV, "").isdigit():
            die_with_launcher(int(env[LAUNCHER_PID_ENV]))
        return None
    count = visible_device_count()
    if not wants_torchrun(env, count, deepspeed):
        return None
    plan = plan_launch(env, count)
    for note in plan.notes:
        logger.info("%s", note)
    logger.info("launching %d process(es) on this machine (node %d of %s) under torchrun, rendezvous at %s:%d",
                plan.nproc_per_node, plan.node_rank, plan.nnodes, plan.master_addr, plan.master_port)
    os.environ[LAUNCHED_ENV] = "1"  # inherited by the workers
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())
    for name in (*(alias for names in ALIASES.values() for alias in names), "WORLD_SIZE"):
        os.environ.pop(name, None)  # read above; torchrun sets RANK, WORLD_SIZE etc. per worker
    runtime.cache_clear()  # this process's environment changed on purpose
    logger.info("%s", " ".join(plan.command(train_args)))
    return run_torchrun(plan.torchrun_argv(train_args))


def run_torchrun(args: list[str]) -> int:
    """torchrun in this process (it has torch imported already; a new interpreter would import it again).
    Returns the first failed worker's exit code (its own error message is already on stderr), else 0."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    try:
        with forward_sigint_to_workers():  # Ctrl-C: the workers checkpoint and stop (launch/signals.py)
            torchrun_main([f"--signals-to-handle={AGENT_SIGNALS}", *args])
    except ChildFailedError as failed:
        codes = [failure.exitcode for failure in failed.failures.values()]
        return next((code for code in codes if code > 0), 1)
    return 0


def launch_env(device_count: int) -> dict[str, str]:
    """The environment the web UI's "device count" adds to its `tuneforge train` subprocess."""
    if device_count < 1:
        raise ConfigError(f"device count {device_count}: use at least 1.")
    return {"NPROC_PER_NODE": str(device_count)} if device_count > 1 else {}


def visible_device_count() -> int:
    """Accelerators this process may use (CUDA_VISIBLE_DEVICES etc. respected); 0 on a CPU-only machine."""
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available():
        return accelerator.device_count()
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _canonical(env: Mapping[str, str], name: str, problems: list[str], notes: list[str]) -> str | None:
    """The value of `name`, or of the one alias the user set instead (conflicting values are a problem)."""
    given = {alias: env[alias] for alias in ALIASES[name] if alias in env}
    if name in env:
        for alias, value in given.items():
            if value != env[name]:
                problems.append(f"{name}={env[name]} and {alias}={value} disagree; tuneforge reads {name} "
                                f"(torchrun's name); unset {alias}.")
        return env[name]
    if len(set(given.values())) > 1:
        listed = ", ".join(f"{alias}={value}" for alias, value in given.items())
        problems.append(f"{listed} disagree; set {name} (torchrun's name) instead.")
        return None
    if given:
        alias, value = next(iter(given.items()))
        notes.append(f"{alias}={value} read as {name}={value} (the name torchrun uses; set {name} to silence this)")
        return value
    return None


def _to_int(name: str, value: str | None, default: int, problems: list[str]) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        problems.append(f"{name}={value!r} is not a whole number.")
        return default


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name, default))
    except ValueError:
        return default
