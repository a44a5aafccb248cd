"""Sequence parallelism (DeepSpeed-Ulysses style): one long sequence split across the ranks of a group.

Each of the P ranks holds 1/P of every sequence (its tokens, their global positions and their already
shifted labels). Everything outside attention is per token, so it runs on the shard unchanged. Attention
needs the whole sequence: an all-to-all trades "all heads of my tokens" for "H/P heads of all tokens", each
rank attends over the full sequence for its heads, and a second all-to-all trades back. The gradient of an
all-to-all is the reverse all-to-all, so backward is exact too.

Why this and not DeepSpeed's own `DistributedAttention`: that one wraps a local attention callable but
leaves sharding, positions and the loss to the caller; the pieces here are what transformers' attention
interface needs (`AttentionInterface` / `AttentionMaskInterface`, registered as `ulysses_sdpa`), and they
run over gloo as well (torch's gloo backend implements `all_to_all`).

Rules the exchange relies on (checked by `check_model`): the number of attention heads is a multiple of P
(key/value heads are repeated up to P when fewer); sequences are padded to a multiple of P. Attention over
the gathered sequence is causal with no mask: exact for right-padded rows (a real token never attends to a
later padding token), which is how training batches are padded.

In a training run (`sequence_parallel_size: N` with `deepspeed:`), the Trainer uses the same scheme as DeepSpeed
implements it (ALST's UlyssesSPAttentionHF + UlyssesSPDataLoaderAdapter, which transformers' Trainer and
accelerate drive through `parallelism_config`): `parallelism_config()` below builds that. The functions here
are the scheme on its own (any torch process group, no DeepSpeed engine), with the test that fixes its maths.

The loss: labels are shifted once over the whole sequence before it is split (the last token of shard r
predicts the first token of shard r+1), each rank sums its tokens' losses and divides by the number of
target tokens of the whole batch, so the partial losses add up to the batch's mean loss, and the parameter
gradients of the ranks add up to the single-process gradient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ...errors import ConfigError

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

    from ...config.groups import ModelArgs, TrainArgs

ATTENTION = "ulysses_sdpa"
IGNORE_INDEX = -100
MODES = ("ulysses",)


class _AllToAll(torch.autograd.Function):
    """Split `tensor` along scatter_dim into P pieces, send piece j to rank j, concatenate what arrives along
    gather_dim (in rank order). Its gradient is the same exchange with the two dimensions swapped."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, scatter_dim: int, gather_dim: int,
                group: ProcessGroup | None) -> torch.Tensor:
        ctx.dims, ctx.group = (scatter_dim, gather_dim), group
        return all_to_all(tensor, scatter_dim, gather_dim, group)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        scatter_dim, gather_dim = ctx.dims
        return all_to_all(grad, gather_dim, scatter_dim, ctx.group), None, None, None


def all_to_all(tensor: torch.Tensor, scatter_dim: int, gather_dim: int,
               group: ProcessGroup | None = None) -> torch.Tensor:
    import torch.distributed as dist

    size = dist.get_world_size(group)
    inputs = [piece.contiguous() for piece in tensor.chunk(size, dim=scatter_dim)]
    outputs = [torch.empty_like(inputs[0]) for _ in range(size)]
    dist.all_to_all(outputs, inputs, group=group)
    return torch.cat(outputs, dim=gather_dim)


_GROUP: list[ProcessGroup | None] = [None]  # the group the registered attention exchanges over


def ulysses_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: q/k/v (batch, heads, local tokens, dim) -> (batch, local tokens,
    heads, dim). Attends over the whole sequence with H/P heads per rank, through transformers' sdpa."""
    import torch.distributed as dist
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    group = _GROUP[0]
    size = dist.get_world_size(group)
    if key.shape[1] % size:  # fewer key/value heads than ranks (or not divisible): give each rank its own copy
        repeats = query.shape[1] // key.shape[1]
        key, value = repeat_kv(key, repeats), repeat_kv(value, repeats)
    # heads scattered, tokens gathered: (batch, heads / P, all tokens, dim)
    query, key, value = (_AllToAll.apply(tensor, 1, 2, group) for tensor in (query, key, value))
    kwargs.pop("is_causal", None)
    output, _ = sdpa_attention_forward(module, query, key, value, None, is_causal=True, **kwargs)
    # output: (batch, all tokens, heads / P, dim) -> tokens scattered back, heads gathered
    return _AllToAll.apply(output, 1, 2, group), None


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None  # causal over the gathered sequence (see the module docstring)


def enable(model: Any, group: ProcessGroup | None = None) -> None:
    """Switch `model`'s attention to the sequence-parallel exchange over `group` (default: all ranks)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    check_model(model.config, _world_size(group))
    AttentionInterface.register(ATTENTION, ulysses_attention)
    AttentionMaskInterface.register(ATTENTION, _no_mask)
    _GROUP[0] = group
    model.set_attn_implementation(ATTENTION)


def check_model(config: Any, size: int) -> None:
    """The head counts the exchange needs, as a ConfigError naming the key."""
    config = getattr(config, "text_config", None) or config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if heads % size:
        raise ConfigError(f"sequence_parallel_size: {size} does not divide the model's {heads} attention heads "
                          "(each rank attends with heads / sequence_parallel_size of them); choose a divisor "
                          f"of {heads}.")
    if kv_heads % size and size % kv_heads:
        raise ConfigError(f"sequence_parallel_size: {size} and the model's {kv_heads} key/value heads: one must "
                          "divide the other so every rank gets whole key/value heads.")


def shard_batch(batch: dict[str, torch.Tensor], rank: int, size: int, pad_token_id: int,
                group_tokens: int | None = None) -> dict[str, Any]:
    """Rank `rank`'s share of a right-padded causal-LM batch (input_ids, labels; attention_mask is implied):
    tokens, global position ids and labels shifted over the whole sequence, padded to a multiple of `size`.
    `num_items_in_batch` is the batch's number of target tokens, so the ranks' losses add up to its mean."""
    input_ids, labels = batch["input_ids"], batch["labels"]
    length = input_ids.shape[1]
    padded = -(-length // size) * size
    if padded != length:
        input_ids = torch.nn.functional.pad(input_ids, (0, padded - length), value=pad_token_id)
        labels = torch.nn.functional.pad(labels, (0, padded - length), value=IGNORE_INDEX)
    shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    positions = torch.arange(padded, device=input_ids.device).expand_as(input_ids)
    shard = slice(rank * (padded // size), (rank + 1) * (padded // size))
    targets = group_tokens if group_tokens is not None else int((shifted != IGNORE_INDEX).sum())
    labels_shard = shifted[:, shard].contiguous()  # the loss flattens it with view()
    return {"input_ids": input_ids[:, shard].contiguous(), "position_ids": positions[:, shard].contiguous(),
            "labels": labels_shard, "shift_labels": labels_shard,
            "num_items_in_batch": torch.tensor(targets, device=input_ids.device)}


def sharded_loss(model: Any, batch: dict[str, torch.Tensor], pad_token_id: int,
                 group: ProcessGroup | None = None) -> torch.Tensor:
    """This rank's part of the batch's mean loss (every rank of `group` must call it with the same batch);
    backward on it leaves this rank's part of the gradient (sum the group's gradients for the whole)."""
    import torch.distributed as dist

    shard = shard_batch(batch, dist.get_rank(group), dist.get_world_size(group), pad_token_id)
    return model(**shard, use_cache=False).loss


# flash_attn key -> the attention DeepSpeed's Ulysses wraps (it refuses eager: it discards the masks).
_CORE_ATTENTION = {"fa2": "flash_attention_2", "fa3": "flash_attention_3", "auto": "sdpa", "sdpa": "sdpa"}
SP_STAGES = ("pt", "sft")


def parallelism_config(train: TrainArgs, model: ModelArgs, stage: str, world_size: int) -> Any:
    """transformers' `parallelism_config` for `sequence_parallel_size` (DeepSpeed's Ulysses through accelerate);
    every reason it cannot run is a ConfigError naming the key, raised before any weights load."""
    size = train.sequence_parallel_size
    problems = []
    if not train.deepspeed:
        problems.append("sequence_parallel_size runs on DeepSpeed's Ulysses sequence parallelism (through "
                        "accelerate); add `deepspeed:` with a ZeRO config (any stage, e.g. ds_z2_config.json).")
    if world_size % size:
        problems.append(f"sequence_parallel_size: {size} must divide the number of processes ({world_size}); "
                        f"launch with NPROC_PER_NODE={size} (or a multiple).")
    if stage not in SP_STAGES:
        problems.append(f"sequence_parallel_size: stage {stage} is not supported (its trainer computes its own "
                        f"loss over whole rows); sequence parallelism trains stages {', '.join(SP_STAGES)}.")
    if model.flash_attn not in _CORE_ATTENTION:
        problems.append(f"sequence_parallel_size: flash_attn {model.flash_attn} (eager attention) cannot run "
                        "sequence-parallel; use flash_attn: sdpa (or fa2 on GPUs).")
    if problems:
        raise ConfigError(problems)
    from accelerate.parallelism_config import ParallelismConfig
    from accelerate.utils import DeepSpeedSequenceParallelConfig

    handler = DeepSpeedSequenceParallelConfig(sp_seq_length_is_variable=True,
                                              sp_attn_implementation=_CORE_ATTENTION[model.flash_attn])
    return ParallelismConfig(sp_size=size, sp_backend="deepspeed", sp_handler=handler)


class ShardableBatches:
    """Wraps the run's collator for DeepSpeed's Ulysses data loader: every batch gets `position_ids` (each
    token's place in its row; the adapter refuses batches without, as positions must survive the split) and
    is right-padded to a multiple of the ranks sharing a sequence (padding: mask 0, label -100, so no result
    changes: attention is causal and padding comes after every real token)."""

    def __init__(self, collator: Any, size: int):
        self.collator, self.size = collator, size

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = dict(self.collator(features))
        length = batch["input_ids"].shape[1]
        extra = -length % self.size
        if extra:
            for key, value in batch.items():
                if torch.is_tensor(value) and value.dim() == 2 and value.shape[1] == length:
                    fill = IGNORE_INDEX if key == "labels" else 0
                    batch[key] = torch.nn.functional.pad(value, (0, extra), value=fill)
        if "position_ids" not in batch:
            rows, width = batch["input_ids"].shape
            batch["position_ids"] = torch.arange(width).expand(rows, width).clone()
        return batch


def shardable_batches(collator: Any, train: TrainArgs) -> Any:
    """The collator for this run: wrapped when sequence parallelism is on, else unchanged."""
    return ShardableBatches(collator, train.sequence_parallel_size) if train.sequence_parallel_size > 1 else collator


def _world_size(group: ProcessGroup | None) -> int:
    import torch.distributed as dist

    return dist.get_world_size(group)
