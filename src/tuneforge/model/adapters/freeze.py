"""Freeze tuning: train only some decoder layers (and optionally some modules outside them).

`freeze_trainable_layers` = +N trains the last N layers, -N the first N. `freeze_trainable_modules`
picks modules inside those layers by name ("all", or e.g. "mlp,self_attn"); `freeze_extra_modules`
adds modules outside the layer stack (e.g. "embed_tokens,norm"). A parameter belongs to layer i when
its name contains ".i." (model.layers.3.mlp.up_proj.weight -> layer 3, module "mlp").

Names are matched exactly, component by component: `norm` means the final `model.norm`, not every
`input_layernorm` (LLaMA-Factory matches substrings there, which silently trains every layer norm).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ..llama_pro import expanded_layer_ids, num_layers, recorded_layers
from .composite import composite_parts, forbidden_modules

if TYPE_CHECKING:
    from ...config.groups import FreezeArgs, MethodArgs

logger = logging.getLogger(__name__)

_LAYER_INDEX = re.compile(r"\.(\d+)\.")


def setup_freeze(model: Any, method: MethodArgs, freeze: FreezeArgs) -> None:
    """Set requires_grad on exactly the parameters freeze tuning trains."""
    layers = num_layers(model, needed_by="finetuning_type: freeze", fix="use finetuning_type: lora or full")
    wanted = freeze.freeze_trainable_layers
    if method.use_llama_pro:  # only the blocks `tuneforge expand` inserted
        layer_ids = set(expanded_layer_ids(layers, wanted, recorded_layers(model)))
    elif wanted > 0:
        layer_ids = set(range(max(0, layers - wanted), layers))
    else:
        layer_ids = set(range(min(-wanted, layers)))

    layer_modules, outer_modules = _module_names(model)
    modules = list(freeze.freeze_trainable_modules)
    extras = list(freeze.freeze_extra_modules or [])
    for name in modules:
        if name != "all" and name not in layer_modules:
            raise ConfigError(f"freeze_trainable_modules: module {name!r} is not in the decoder layers; "
                              f"choose from: all, {', '.join(sorted(layer_modules))}")
    for name in extras:
        if name not in outer_modules:
            raise ConfigError(f"freeze_extra_modules: module {name!r} is not outside the decoder layers; "
                              f"choose from: {', '.join(sorted(outer_modules))}")

    parts = composite_parts(model)
    projector = parts.projector if parts and not method.freeze_multi_modal_projector else ()
    blocked = forbidden_modules(model, method)

    def trainable(param_name: str) -> bool:
        if any(key in param_name for key in blocked):
            return False
        if any(key in param_name for key in projector):
            return True
        match = _LAYER_INDEX.search(param_name)
        if match:
            module = param_name[match.end():].split(".")[0]
            return int(match.group(1)) in layer_ids and ("all" in modules or module in modules)
        return _outer_module(param_name) in extras

    for name, param in model.named_parameters():
        param.requires_grad_(trainable(name))
    logger.info("Trainable layers: %s; modules: %s%s", sorted(layer_ids), ",".join(modules),
                f"; extra modules: {','.join(extras)}" if extras else "")


def _module_names(model: Any) -> tuple[set[str], set[str]]:
    """(module names inside numbered layers, module names outside them)."""
    inside, outside = set(), set()
    for name, _ in model.named_parameters():
        match = _LAYER_INDEX.search(name)
        if match:
            inside.add(name[match.end():].split(".")[0])
        else:
            outside.add(_outer_module(name))
    return inside, outside


def _outer_module(param_name: str) -> str:
    # "model.embed_tokens.weight" -> "embed_tokens"; "lm_head.weight" -> "lm_head"
    parts = param_name.split(".")
    return parts[-2] if len(parts) >= 2 else parts[0]
