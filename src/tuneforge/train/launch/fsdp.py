"""FSDP / FSDP2 settings for transformers' `fsdp: true` + `fsdp_config: {...}` (accelerate runs them).

FSDP shards parameters, gradients and optimizer state over GPUs. It needs accelerators: on CPU the Trainer
would silently run plain DDP, so distributed.py refuses it there. This module writes the `fsdp_config`
mapping (for a YAML file or the web UI) and checks one with the engines' own validation: transformers'
argument processing, then accelerate's FullyShardedDataParallelPlugin.
"""

from __future__ import annotations

from typing import Any

from ...errors import ConfigError

STATE_DICT_TYPES = ("FULL_STATE_DICT", "SHARDED_STATE_DICT")


def fsdp_config(version: int = 2, cpu_offload: bool = False, layer_classes: list[str] | None = None,
                state_dict_type: str = "FULL_STATE_DICT", activation_checkpointing: bool = False) -> dict[str, Any]:
    """`fsdp_config` for `fsdp: true`. layer_classes: decoder-layer class names to wrap (default: the model's
    own `_no_split_modules`, which accelerate reads); FULL_STATE_DICT saves a normal checkpoint on rank 0."""
    if version not in (1, 2):
        raise ConfigError(f"fsdp_config: version {version!r}; choose 2 (FSDP2, per-parameter sharding) or 1.")
    if state_dict_type not in STATE_DICT_TYPES:
        raise ConfigError(f"fsdp_config: state_dict_type {state_dict_type!r}; choose one of {STATE_DICT_TYPES}.")
    config: dict[str, Any] = {
        "version": version,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "cpu_offload": cpu_offload,
        "state_dict_type": state_dict_type,
        "activation_checkpointing": activation_checkpointing,
        "reshard_after_forward": True if version == 2 else "full_shard",
    }
    if layer_classes:
        config["transformer_layer_cls_to_wrap"] = list(layer_classes)
    return config


def validate_fsdp(config: dict[str, Any]) -> Any:
    """The accelerate plugin transformers would build from `fsdp: true` + `config`; a ConfigError when either
    engine rejects it. Runs on CPU: it only checks the settings."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from transformers import TrainingArguments

    try:
        # transformers 5 types `fsdp` as a string but takes the YAML switch `fsdp: true` as well.
        args = TrainingArguments(output_dir="fsdp-check", use_cpu=True, fsdp=True,  # type: ignore[arg-type]
                                 fsdp_config=dict(config))
        return FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"fsdp_config: rejected by transformers/accelerate: {error}") from None
