"""What a training process settles when it is one rank of a launched run (see launch.py).

- On CPU the ranks talk over gloo (`ddp_backend: gloo`); a GPU-only backend is refused up front.
- `ddp_timeout` is honoured: transformers passes it to the process group only on accelerators, so on CPU
  we open the group ourselves with it (accelerate then reuses that group).
- FSDP needs accelerators: on CPU the Trainer would silently fall back to plain DDP, so we refuse it.
- DeepSpeed configs get their "auto" values filled from the run's arguments (deepspeed_config.py).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ...runtime import runtime

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from ...config.groups import ModelArgs, TrainArgs

logger = logging.getLogger(__name__)

CPU_BACKENDS = ("gloo", "mpi", "ccl")


def uses_fsdp(train: TrainArgs) -> bool:
    return bool(train.fsdp) or runtime().accelerate_fsdp


def distributed_arg_changes(train: TrainArgs, model: ModelArgs, device: str, stage: str = "sft") -> dict[str, Any]:
    """Changes to the training arguments for a multi-process run (empty for a one-process run)."""
    changes: dict[str, Any] = {}
    if train.sequence_parallel_size > 1:
        from .sequence_parallel import parallelism_config

        changes["parallelism_config"] = parallelism_config(train, model, stage, runtime().world_size)
    if device == "cpu" and uses_fsdp(train):
        raise ConfigError("fsdp: FSDP shards the model over GPUs (accelerate enables it only on CUDA/XPU/NPU "
                          "devices); on CPU the Trainer would silently run plain DDP instead. Remove fsdp / "
                          "fsdp_config to train with DDP over gloo (FORCE_TORCHRUN=1 NPROC_PER_NODE=2 "
                          "tuneforge train ...), or run on a GPU machine.")
    if device == "cpu" and runtime().is_distributed:
        backend = train.ddp_backend
        if backend is not None and backend not in CPU_BACKENDS:
            raise ConfigError(f"ddp_backend: {backend} needs GPUs; on CPU the processes communicate over gloo. "
                              "Remove ddp_backend (or set ddp_backend: gloo).")
        changes["ddp_backend"] = backend or "gloo"
    if train.deepspeed:
        from .deepspeed import deepspeed_for_run

        changes["deepspeed"] = deepspeed_for_run(train, model, device, runtime().world_size)
    return changes


def open_cpu_process_group(backend: str | None, timeout_s: int, deepspeed: bool = False) -> None:
    """On CPU, open the run's process group with ddp_timeout (transformers would open it without).
    With DeepSpeed, its communication layer adopts the group now: ZeRO-3 partitions the weights while they
    load (zero.Init), and before deepspeed.comm knows the group it sees one rank, rejecting the batch sizes."""
    if not runtime().is_distributed:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend=backend or "gloo", timeout=timedelta(seconds=timeout_s))
    if deepspeed:
        import deepspeed as ds

        ds.init_distributed(dist_backend=backend or "gloo", timeout=timedelta(seconds=timeout_s))


def join_process_group(args: TrainingArguments) -> None:
    """Set up accelerate's state now (it reuses or opens the group with ddp_timeout), before the data
    pipeline needs the group, and say which rank this is."""
    facts = runtime()
    if not facts.is_distributed:
        return
    import torch.distributed as dist

    from accelerate import PartialState

    args.device  # noqa: B018  (a cached property: building it initialises the distributed state)
    processes = PartialState().num_processes
    if processes != facts.world_size:
        # What happens when DeepSpeed on CPU opens its own state: every rank would get the same batches.
        raise ConfigError(f"accelerate sees {processes} process(es) but torchrun started {facts.world_size}: the "
                          "ranks would all train on the same data. Launch with `tuneforge train` (it opens the "
                          "process group first), or remove deepspeed / fsdp on this machine.")
    logger.info("rank %s of %d (local rank %s): process group %s, timeout %s s", facts.rank,
                dist.get_world_size(), facts.local_rank, dist.get_backend_config(), group_timeout_s())


def group_timeout_s() -> int | None:
    """The timeout the default process group really runs with (read back from torch, not from our args)."""
    import torch
    import torch.distributed as dist

    try:
        group = dist.group.WORLD
        if group is None:
            return None
        device = torch.device("cuda") if torch.device("cuda") in group._device_types else torch.device("cpu")
        return int(group._get_backend(device).options._timeout.total_seconds())
    except (AttributeError, RuntimeError):  # private API: a torch release may move it
        return None
