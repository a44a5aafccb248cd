"""RoPE scaling (`rope_scaling`: linear | dynamic | yarn | llama3): stretch the positions a model was
pretrained on to fit longer inputs, written into the model config before the weights load.

The factor is LLaMA-Factory 0.9.5's: for training, ceil(cutoff_len / the pretrained length), and no scaling
at all when cutoff_len already fits; for inference, 2. The pretrained length is the config's
`original_max_position_embeddings` when it has one (an already-scaled model), else
`max_position_embeddings`, which grows to pretrained length x factor. yarn and dynamic also record the
pretrained length; llama3 adds low_freq_factor 1 and high_freq_factor 4.

With `dynamic`, transformers rescales only inputs longer than `max_position_embeddings`, which this rule
has already enlarged: in practice dynamic NTK acts past cutoff_len (the same as in LLaMA-Factory).

transformers 5 keeps this in `config.rope_parameters` (the old `rope_scaling` attribute is a deprecated
alias of it) together with `rope_theta`, which is kept.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from transformers import PretrainedConfig
    from ..config.groups import DataArgs, ModelArgs

logger = logging.getLogger(__name__)

ROPE_TYPES = ("linear", "dynamic", "yarn", "llama3")
INFERENCE_FACTOR = 2.0


def configure_rope(config: PretrainedConfig, args: ModelArgs, data: DataArgs, is_trainable: bool) -> None:
    """Write the scaling of `rope_scaling` into the model's `config` (no-op when it is unset)."""
    rope_type = args.rope_scaling
    if rope_type is None:
        return
    if rope_type not in ROPE_TYPES:
        raise ConfigError(f"rope_scaling: unknown method {rope_type!r}; use one of {', '.join(ROPE_TYPES)}")
    text_config = getattr(config, "text_config", None) or config
    current = getattr(text_config, "rope_parameters", None)
    if not isinstance(current, dict) or "rope_theta" not in current and "rope_type" not in current:
        problem = ("its RoPE settings differ per layer type" if isinstance(current, dict)
                   else "it has no rotary position embeddings")
        raise ConfigError(f"rope_scaling: {type(config).__name__} cannot be RoPE-scaled here ({problem}); "
                          "remove rope_scaling")
    old_length = current.get("original_max_position_embeddings") or getattr(text_config,
                                                                             "max_position_embeddings", None)
    if not old_length:
        raise ConfigError(f"rope_scaling: {type(config).__name__} has no max_position_embeddings to scale from; "
                          "remove rope_scaling")

    if is_trainable:
        wanted = data.cutoff_len
        if wanted <= old_length:
            logger.warning("rope_scaling: cutoff_len %d fits in the model's %d positions; RoPE scaling is not "
                           "applied", wanted, old_length)
            return
        if rope_type == "dynamic":
            logger.warning("rope_scaling: dynamic NTK scaling may not work well with fine-tuning "
                           "(https://github.com/huggingface/transformers/pull/24653)")
        factor = float(math.ceil(wanted / old_length))
    else:
        factor = INFERENCE_FACTOR

    parameters = {key: current[key] for key in ("rope_theta", "partial_rotary_factor") if key in current}
    parameters.update(rope_type=rope_type, factor=factor)
    if rope_type in ("dynamic", "yarn", "llama3"):
        parameters["original_max_position_embeddings"] = old_length
    if rope_type == "llama3":
        parameters.update(low_freq_factor=1.0, high_freq_factor=4.0)
    text_config.rope_parameters = parameters
    text_config.max_position_embeddings = int(old_length * factor)
    logger.info("RoPE scaling: %s with factor %s; max length %d -> %d", rope_type, factor, old_length,
                text_config.max_position_embeddings)
