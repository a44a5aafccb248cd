"""LLaMA Pro: grow a model by identity blocks, then train only those blocks.

Block expansion (LLaMA-Factory's scripts/llama_pro.py, same layout): the N layers are cut into `num_expand`
groups and after each group a copy of its last layer is inserted with its attention output projection
(`o_proj`) and MLP down projection (`down_proj`) zeroed. A zeroed block adds nothing to the residual stream,
so the expanded model computes exactly what the original did until training moves the new blocks.

With `use_llama_pro: true`, freeze tuning trains (and LoRA adapts) only the inserted blocks; with
`freeze_trainable_layers` = num_expand these are the layers stride-1, 2*stride-1, ... where
stride = total layers / num_expand. `tuneforge expand` also records the inserted layers in config.json
(`llama_pro_inserted_layers`), so a freeze_trainable_layers that would pick other layers is refused.

    tuneforge expand --model_name_or_path ./base --output_dir ./base_pro --num_expand 8
    python -m tuneforge.model.llama_pro (same flags)
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

logger = logging.getLogger(__name__)

# Output projections zeroed in each inserted block (LLaMA-Factory's choice; llama/mistral/qwen2/yi names).
ZEROED_PROJECTIONS = ("o_proj", "down_proj")
# Config key where `tuneforge expand` records the inserted layers, so training can check
# freeze_trainable_layers against them (models expanded by LLaMA-Factory's script have no record).
RECORD_KEY = "llama_pro_inserted_layers"


# --- training the expanded blocks ----------------------------------------------------------------


def expanded_layer_ids(num_layers: int, num_expanded: int, recorded: list[int] | None = None) -> list[int]:
    """Indices of the inserted blocks in an expanded model of `num_layers` layers (checked against the
    `recorded` ones when the model carries a record)."""
    if num_expanded <= 0:
        raise ConfigError(f"use_llama_pro: freeze_trainable_layers must be the number of inserted blocks (a "
                          f"positive number), got {num_expanded}")
    if num_layers % num_expanded:
        raise ConfigError(f"use_llama_pro: the model's {num_layers} layers are not divisible by "
                          f"freeze_trainable_layers {num_expanded}; set freeze_trainable_layers to the "
                          "num_expand the model was expanded with")
    stride = num_layers // num_expanded
    ids = list(range(stride - 1, num_layers, stride))
    if recorded is not None and list(recorded) != ids:
        raise ConfigError(f"use_llama_pro: this model was expanded with num_expand {len(recorded)} (inserted "
                          f"layers {list(recorded)}), but freeze_trainable_layers {num_expanded} would train layers "
                          f"{ids}; set freeze_trainable_layers: {len(recorded)}")
    return ids


def recorded_layers(model: Any) -> list[int] | None:
    config = getattr(model.config, "text_config", None) or model.config
    return getattr(config, RECORD_KEY, None)


def expanded_block_modules(model: Any, targets: list[str], num_expanded: int) -> list[str]:
    """Full names of the `targets` modules that sit inside the inserted blocks (LoRA + LLaMA Pro)."""
    layers = num_layers(model, needed_by="use_llama_pro", fix="remove use_llama_pro")
    layer_ids = expanded_layer_ids(layers, num_expanded, recorded_layers(model))
    ids = {f".{index}." for index in layer_ids}
    names = [name for name, _ in model.named_modules()
             if name.split(".")[-1] in targets and any(index in name for index in ids)]
    logger.info("LLaMA Pro: LoRA on the expanded blocks %s", layer_ids)
    return names


def num_layers(model: Any, needed_by: str, fix: str) -> int:
    """The number of decoder layers of a loaded model (of its language model, for a composite model); a
    ConfigError naming the setting that `needed_by` it, and its `fix`, when the config does not say."""
    config = getattr(model.config, "text_config", None) or model.config
    for key in ("num_hidden_layers", "num_layers", "n_layer"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise ConfigError(f"{needed_by}: cannot find the layer count of {type(model).__name__} (its config has no "
                      f"num_hidden_layers, num_layers or n_layer); {fix}")


# --- expanding a model ---------------------------------------------------------------------------


def expand_model(model_name_or_path: str, output_dir: str, num_expand: int, shard_size: str = "5GB",
                 save_safetensors: bool = True, trust_remote_code: bool = False) -> Any:
    """Write the expanded model (+ tokenizer) to output_dir; return the expanded model."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
    layer_count = int(getattr(config, "num_hidden_layers", 0) or 0)
    if num_expand <= 0 or not layer_count or layer_count % num_expand:
        raise ConfigError(f"num_expand: the model's {layer_count} layers must be divisible by num_expand "
                          f"(got {num_expand}); choose a divisor of {layer_count}")
    model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype="auto",
                                                 trust_remote_code=trust_remote_code)
    layers = _decoder_layers(model, layer_count)
    split = layer_count // num_expand
    expanded, sources = [], []
    for index, layer in enumerate(layers):
        expanded.append(layer)
        sources.append(index)
        if (index + 1) % split == 0:
            expanded.append(_identity_copy(layer))
            sources.append(index)
            logger.info("Inserted layer %d, an identity copy of layer %d", len(expanded) - 1, index)
    _replace_layers(model, layers, expanded)
    _expand_config(model.config, sources)

    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir, max_shard_size=shard_size, safe_serialization=save_safetensors)
    _copy_tokenizer(model_name_or_path, output_dir, trust_remote_code)
    print(f"Expanded {layer_count} layers to {len(expanded)} layers in {output_dir}.\n"
          f"Fine-tune the new blocks with:\n  model_name_or_path: {output_dir}\n  finetuning_type: freeze\n"
          f"  freeze_trainable_layers: {num_expand}\n  use_llama_pro: true")
    return model


def _decoder_layers(model: Any, layer_count: int) -> Any:
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == layer_count and name.endswith("layers"):
            return module
    raise ConfigError(f"{type(model).__name__}: cannot find its list of {layer_count} decoder layers to expand")


def _identity_copy(layer: Any) -> Any:
    import torch

    block = copy.deepcopy(layer)
    zeroed = set()
    with torch.no_grad():
        for name, param in block.named_parameters():
            projection = next((key for key in ZEROED_PROJECTIONS if key in name.split(".")), None)
            if projection:
                param.zero_()
                zeroed.add(projection)
    if zeroed != set(ZEROED_PROJECTIONS):
        raise ConfigError(f"{type(layer).__name__} has no {' and '.join(sorted(set(ZEROED_PROJECTIONS) - zeroed))} "
                          "module: LLaMA Pro expansion supports llama-style blocks (llama, mistral, qwen2, yi)")
    return block


def _replace_layers(model: Any, old: Any, expanded: list[Any]) -> None:
    import torch

    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            if child is old:
                setattr(module, child_name, torch.nn.ModuleList(expanded))
                break
    # Attention modules index the KV cache by their layer number.
    for index, layer in enumerate(expanded):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index


def _expand_config(config: PretrainedConfig, sources: list[int]) -> None:
    text_config = getattr(config, "text_config", None) or config
    text_config.num_hidden_layers = len(sources)
    inserted = [index for index in range(1, len(sources)) if sources[index] == sources[index - 1]]
    setattr(text_config, RECORD_KEY, inserted)
    for key in ("layer_types", "mlp_layer_types"):
        values = getattr(text_config, key, None)
        if isinstance(values, list):
            setattr(text_config, key, [values[source] for source in sources])


def _copy_tokenizer(source: str, output_dir: str, trust_remote_code: bool) -> None:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        logger.warning("No tokenizer copied (%s); add one to %s before training", error, output_dir)
        return
    tokenizer.save_pretrained(output_dir)


# --- command line --------------------------------------------------------------------------------


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The flags of LLaMA-Factory's llama_pro.py script (so its commands work with `tuneforge expand`)."""
    parser = parser or argparse.ArgumentParser(prog="python -m tuneforge.model.llama_pro")
    parser.description = "LLaMA Pro block expansion: insert identity-initialised blocks into a model."
    parser.add_argument("--model_name_or_path", required=True, help="local model directory to expand")
    parser.add_argument("--output_dir", required=True, help="where the expanded model is written")
    parser.add_argument("--num_expand", type=int, required=True,
                        help="blocks to insert; must divide the number of layers")
    parser.add_argument("--shard_size", default="5GB", help="largest weight file (default 5GB)")
    parser.add_argument("--save_safetensors", type=_bool, default=True, help="true (default) or false")
    parser.add_argument("--trust_remote_code", type=_bool, default=False)
    return parser


def run(args: argparse.Namespace) -> int:
    expand_model(args.model_name_or_path, args.output_dir, args.num_expand, shard_size=args.shard_size,
                 save_safetensors=args.save_safetensors, trust_remote_code=args.trust_remote_code)
    return 0


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "y"):
        return True
    if value.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
