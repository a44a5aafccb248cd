"""Shapes and values of parameters that DeepSpeed ZeRO-3 partitions across ranks.

Under ZeRO-3 the weights are split while they load (`deepspeed.zero.Init`): each rank keeps only its slice
in `param.ds_tensor`, and `param` itself becomes an empty placeholder, so `param.shape` is (0,) and
`param.numel()` is 0. DeepSpeed records the full shape as `param.ds_shape` (and `ds_numel`). Code that
needs a full shape reads it here; code that needs the full values gathers them with `gathered(...)`
(DeepSpeed's GatheredParameters; with `modifier_rank` the changes made on that rank are kept and
re-partitioned). Without ZeRO-3 every helper is the plain tensor operation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch


def is_partitioned(param: torch.Tensor) -> bool:
    """A parameter ZeRO-3 manages (DeepSpeed gives each one an id)."""
    return hasattr(param, "ds_id")


def full_shape(param: torch.Tensor) -> torch.Size:
    """The parameter's shape across all ranks."""
    shape = getattr(param, "ds_shape", None)
    return torch.Size(shape) if shape is not None else param.shape


def full_numel(param: torch.Tensor) -> int:
    """The parameter's element count across all ranks."""
    numel = getattr(param, "ds_numel", None)
    return int(numel) if numel is not None else param.numel()


@contextlib.contextmanager
def gathered(params: Iterable[torch.Tensor | None], modifier_rank: int | None = None) -> Iterator[None]:
    """Inside, the partitioned ones of `params` hold their full values on every rank. modifier_rank: the rank
    whose in-place changes are kept (broadcast, then partitioned again); None: read only."""
    partitioned: list[Any] = [param for param in params if param is not None and is_partitioned(param)]
    if not partitioned:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=modifier_rank):
        yield
