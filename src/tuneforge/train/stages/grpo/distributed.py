"""Collectives for the GRPO loop; each is the identity in a single process.

Each rank generates for its own prompts, so a group never spans ranks; what needs every rank is the
whole step's reward std (scale_rewards batch), dapo's token count, the logged statistics and the gradients
(summed: every rank's loss is already divided by the number of ranks, or by the global token count)."""

from __future__ import annotations

import torch

from ....runtime import runtime


def _active() -> bool:
    import torch.distributed as dist

    return runtime().world_size > 1 and dist.is_available() and dist.is_initialized()


def _device() -> torch.device:
    import torch.distributed as dist

    # NCCL moves CUDA tensors only; gloo works on the CPU.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (same shape on every rank) from all ranks, in rank order."""
    if not _active():
        return tensor
    import torch.distributed as dist

    local = tensor.to(_device())
    parts = [torch.empty_like(local) for _ in range(runtime().world_size)]
    dist.all_gather(parts, local)
    return torch.cat(parts).to(tensor.device)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if not _active():
        return tensor
    import torch.distributed as dist

    local = tensor.to(_device()).clone()
    dist.all_reduce(local)
    return local.to(tensor.device)


def any_rank(flag: bool) -> bool:
    return bool(all_reduce_sum(torch.tensor(float(flag))) > 0)


def sum_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum every trainable parameter's gradient over the ranks (in place)."""
    if not _active():
        return
    import torch.distributed as dist

    for param in params:
        assert param.grad is not None
        grad = param.grad.to(_device())
        dist.all_reduce(grad)
        if grad is not param.grad:
            param.grad.copy_(grad)
