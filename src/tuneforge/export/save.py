"""Write the exported model: weights in shards, tokenizer with its chat template, Ollama Modelfile.

transformers 5 writes only safetensors (`safe_serialization` is gone), so `export_legacy_format` (.bin
files, for tools that still want them) is written here: the same shard split huggingface_hub computes for
safetensors, each shard a `torch.save` state dict, with the `pytorch_model.bin.index.json` transformers reads.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch

logger = logging.getLogger(__name__)

MODELFILE = "Modelfile"


def save_weights(model: Any, export_dir: str, max_shard_size: int | str, legacy_format: bool = False) -> list[str]:
    """Config, generation config and weights (shards of at most `max_shard_size`); returns the weight files."""
    if not legacy_format:
        model.save_pretrained(export_dir, max_shard_size=max_shard_size)
    else:
        model.config.save_pretrained(export_dir)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(export_dir)
        _save_bin_shards(model, export_dir, max_shard_size)
    suffix = ".bin" if legacy_format else ".safetensors"
    return sorted(name for name in os.listdir(export_dir) if name.endswith(suffix))


def _save_bin_shards(model: Any, export_dir: str, max_shard_size: int | str) -> None:
    from huggingface_hub import split_torch_state_dict_into_shards

    state_dict = _without_tied_copies(model)
    split = split_torch_state_dict_into_shards(state_dict, filename_pattern="pytorch_model{suffix}.bin",
                                               max_shard_size=max_shard_size)
    for filename, names in split.filename_to_tensors.items():
        torch.save({name: state_dict[name].contiguous() for name in names}, os.path.join(export_dir, filename))
    if split.is_sharded:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state_dict.values())},
                 "weight_map": split.tensor_to_filename}
        with open(os.path.join(export_dir, "pytorch_model.bin.index.json"), "w", encoding="utf-8") as file:
            json.dump(index, file, indent=2, sort_keys=True)


def _without_tied_copies(model: Any) -> dict[str, torch.Tensor]:
    """The state dict with each shared tensor once (a tied lm_head is rebuilt from the embeddings on load)."""
    seen: set[int] = set()
    state = {}
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr()
        if key in seen and tensor.numel():
            continue
        seen.add(key)
        state[name] = tensor.detach().cpu()
    return state


def save_tokenizer(tokenizer: Any, export_dir: str) -> None:
    """The tokenizer with the chat template in tokenizer_config.json, padding on the left for generation."""
    from ..data import save_tokenizer_with_chat_template

    tokenizer.padding_side = "left"
    tokenizer.init_kwargs["padding_side"] = "left"
    save_tokenizer_with_chat_template(tokenizer, export_dir)


def save_image_processor(template: Any, export_dir: str) -> bool:
    """A vision-language model's image processor beside the weights (preprocessor_config.json), so the
    export loads with AutoProcessor / AutoImageProcessor like the original; False for text-only models."""
    processor = getattr(getattr(template, "media_plugin", None), "image_processor", None)
    if processor is None:
        return False
    processor.save_pretrained(export_dir)
    return True


def save_modelfile(template: Any, tokenizer: Any, export_dir: str, weights_from: str = ".") -> str | None:
    """An Ollama Modelfile; `weights_from` is what FROM names (the folder, or a GGUF file in it). None when the
    run uses the model's own Jinja chat template (no `template` set), which has no Ollama equivalent."""
    if not hasattr(template, "to_ollama_modelfile"):
        logger.warning("No Ollama Modelfile written: the chat template is the model's own Jinja template, which "
                       "Ollama's template language cannot express; set `template` to write one")
        return None
    text = template.to_ollama_modelfile(tokenizer)
    if weights_from != ".":
        text = text.replace("\nFROM .\n", f"\nFROM ./{weights_from}\n", 1)
    path = os.path.join(export_dir, MODELFILE)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
    logger.info("Ollama Modelfile saved to %s", path)
    return path
