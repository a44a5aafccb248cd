"""DeepSpeed ZeRO configs: generate them (the seed's stage 2 / 3 + offload, called by the web UI) and fill
their "auto" values from the run's arguments.

LLaMA-Factory's ds_z2 / ds_z3 / ds_z3_offload files (and the ones its web UI writes) leave batch sizes,
clipping, precision and bucket sizes as "auto". transformers fills them from accelerate's view of the run,
which on CPU can be one process while torchrun started several (then every rank trains on the same data;
distributed.join_process_group refuses that). We fill them from the run itself with the same formulas
(train_batch_size = micro batch x accumulation x world size; buckets from the hidden size) and check the
result with DeepSpeed's own config class before any weights load, so a bad file fails in seconds.

DeepSpeed itself always runs under a launcher (launch.py relaunches even for one process: outside one it
looks for MPI). On CPU our launch opens the gloo group before accelerate, and ZeRO-2 then trains with real
data parallelism (tests/train/test_scale_ddp.py, opt-in: its first CPU run compiles an op for minutes).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError

if TYPE_CHECKING:
    from ...config.groups import ModelArgs, TrainArgs

logger = logging.getLogger(__name__)

AUTO = "auto"
DS_STAGES = ("none", "2", "3")  # the web UI's choices; "none" trains without DeepSpeed
_OFFLOAD = {"device": "cpu", "pin_memory": True}


def zero_config(stage: int | str, offload: bool = False) -> dict[str, Any]:
    """The ZeRO config for `stage` (2 or 3), optimizer (and for stage 3 parameter) offload to CPU optional;
    the same settings LLaMA-Factory's web UI writes, "auto" where the run decides."""
    stage = int(stage)
    config: dict[str, Any] = {
        "train_batch_size": AUTO,
        "train_micro_batch_size_per_gpu": AUTO,
        "gradient_accumulation_steps": AUTO,
        "gradient_clipping": AUTO,
        "zero_allow_untested_optimizer": True,
        "fp16": {"enabled": AUTO, "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
                 "hysteresis": 2, "min_loss_scale": 1},
        "bf16": {"enabled": AUTO},
    }
    if stage == 2:
        zero: dict[str, Any] = {
            "stage": 2, "allgather_partitions": True, "allgather_bucket_size": 5e8, "overlap_comm": False,
            "reduce_scatter": True, "reduce_bucket_size": 5e8, "contiguous_gradients": True,
            "round_robin_gradients": True,
        }
    elif stage == 3:
        zero = {
            "stage": 3, "overlap_comm": False, "contiguous_gradients": True, "sub_group_size": 1e9,
            "reduce_bucket_size": AUTO, "stage3_prefetch_bucket_size": AUTO,
            "stage3_param_persistence_threshold": AUTO, "stage3_max_live_parameters": 1e9,
            "stage3_max_reuse_distance": 1e9, "stage3_gather_16bit_weights_on_model_save": True,
        }
    else:
        raise ConfigError(f"DeepSpeed stage {stage!r}: choose 2 or 3 (or none to train without DeepSpeed).")
    if offload:
        zero["offload_optimizer"] = dict(_OFFLOAD)
        if stage == 3:
            zero["offload_param"] = dict(_OFFLOAD)
    config["zero_optimization"] = zero
    return config


def write_zero_config(stage: int | str, offload: bool, directory: str) -> str:
    """Write zero_config(stage, offload) as ds_z<stage>[_offload]_config.json under `directory`; the path
    goes into the run's `deepspeed:` key."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"ds_z{int(stage)}_{'offload_' if offload else ''}config.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(zero_config(stage, offload), handle, indent=2)
    return path


def fill_auto_values(config: dict[str, Any], *, micro_batch: int, grad_accum: int, world_size: int,
                     max_grad_norm: float, fp16: bool, bf16: bool, hidden_size: int | None) -> dict[str, Any]:
    """A copy of `config` with every "auto" we can decide replaced (transformers' formulas)."""
    filled = copy.deepcopy(config)
    top = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch * grad_accum * world_size,
        "gradient_clipping": max_grad_norm,
    }
    for key, value in top.items():
        if filled.get(key) == AUTO:
            filled[key] = value
    for section, enabled in (("fp16", fp16), ("bf16", bf16)):
        if isinstance(filled.get(section), dict) and filled[section].get("enabled") == AUTO:
            filled[section]["enabled"] = enabled
    zero = filled.get("zero_optimization")
    if isinstance(zero, dict) and hidden_size:
        by_hidden = {
            "reduce_bucket_size": hidden_size * hidden_size,
            "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
            "stage3_param_persistence_threshold": 10 * hidden_size,
        }
        for key, value in by_hidden.items():
            if zero.get(key) == AUTO:
                zero[key] = value
    return filled


def remaining_autos(config: Any, prefix: str = "") -> list[str]:
    """Dotted keys still set to "auto" (optimizer / scheduler ones are filled by transformers)."""
    if isinstance(config, dict):
        return [key for name, value in config.items() for key in remaining_autos(value, f"{prefix}{name}.")]
    return [prefix.rstrip(".")] if config == AUTO else []


def validate_with_deepspeed(config: dict[str, Any], source: str = "deepspeed") -> None:
    """Check a filled config with DeepSpeed's own DeepSpeedConfig (one process's view of the batch sizes)."""
    from deepspeed.runtime.config import DeepSpeedConfig

    one_rank = copy.deepcopy(config)
    micro, accum = one_rank.get("train_micro_batch_size_per_gpu"), one_rank.get("gradient_accumulation_steps")
    if isinstance(micro, int) and isinstance(accum, int):
        one_rank["train_batch_size"] = micro * accum  # DeepSpeedConfig sees world size 1 outside a run
    try:
        DeepSpeedConfig(one_rank)
    except Exception as error:  # noqa: BLE001  (DeepSpeed raises assorted types for a bad config)
        raise ConfigError(f"{source}: DeepSpeed rejects the config: {error}") from None


def deepspeed_for_run(train: TrainArgs, model: ModelArgs, device: str, world_size: int) -> dict[str, Any]:
    """The run's DeepSpeed config: read, "auto" values filled, validated by DeepSpeed."""
    from ...config.checks import read_deepspeed_config

    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise ConfigError("deepspeed: the deepspeed package is not installed; `pip install deepspeed==0.19.8` "
                          "(or remove deepspeed to train without it).") from None
    if device == "cpu":
        logger.warning("deepspeed on CPU: the first run compiles DeepSpeed's shared-memory op (minutes; cached "
                       "in ~/.cache/torch_extensions afterwards)")
    config, problem = read_deepspeed_config(train.deepspeed)
    if problem or config is None:
        raise ConfigError(problem or "deepspeed: no DeepSpeed config given")
    filled = fill_auto_values(
        config, micro_batch=train.per_device_train_batch_size, grad_accum=train.gradient_accumulation_steps,
        world_size=world_size, max_grad_norm=train.max_grad_norm, fp16=bool(train.fp16), bf16=bool(train.bf16),
        hidden_size=_hidden_size(model))
    validate_with_deepspeed(filled)
    return filled


def _hidden_size(model: ModelArgs) -> int | None:
    """The model's hidden size from its config.json (None when it cannot be read: transformers then fills
    the bucket sizes from the loaded model)."""
    if model.model_name_or_path is None:
        return None
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model.model_name_or_path, trust_remote_code=model.trust_remote_code)
    except Exception:  # noqa: BLE001  (the model loader reports an unreadable model properly, later)
        return None
    config = getattr(config, "text_config", None) or config
    size = getattr(config, "hidden_size", None)
    return size if isinstance(size, int) else None
