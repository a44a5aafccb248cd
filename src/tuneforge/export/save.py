"""Write the exported model: weights in shards, tokenizer with its chat template, Ollama Modelfile.

transformers 5 writes only safetensors (`safe_serialization` is gone), so `export_legacy_format` (.bin
files, for tools that still want them) is written here: the same shard split huggingface_hub computes for
safetensors, each shard a `torch.save` state dict, with the `pytorch_model.bin.index.json` transformers reads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
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


# A multimodal model's processor files (transformers' names): what AutoProcessor / AutoImageProcessor /
# AutoVideoProcessor / AutoFeatureExtractor read beside the weights and tokenizer.
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
                   "chat_template.json", "chat_template.jinja")
# Attributes under which a media plugin may hold processor objects (fallback for a hub model, no local files).
PROCESSOR_ATTRIBUTES = ("processor", "image_processor", "video_processor", "feature_extractor")


def save_processor_files(template: Any, model_dir: str, export_dir: str) -> list[str]:
    """A multimodal model's processor files beside the exported weights, so that the export loads with
    AutoProcessor / AutoImageProcessor like the original; [] for text-only runs. Returns the names written.

    Copied from the model directory as they are (every family's files, including ones a plugin never loads,
    e.g. the video processor of a Qwen-VL on a machine without torchvision); files the tokenizer already
    wrote (its chat template) are kept. Without a local directory (a hub id), the plugin's processor objects
    are saved instead."""
    plugin = getattr(template, "media_plugin", None)
    if plugin is None:
        return []
    written = []
    if os.path.isdir(model_dir):
        for name in PROCESSOR_FILES:
            source, target = os.path.join(model_dir, name), os.path.join(export_dir, name)
            if os.path.isfile(source) and not os.path.exists(target):
                shutil.copyfile(source, target)
                written.append(name)
    processor = next((getattr(plugin, name) for name in PROCESSOR_ATTRIBUTES
                      if hasattr(getattr(plugin, name, None), "save_pretrained")), None)
    if not written and processor is not None:
        # Saved aside, then only the files not yet there are moved in: a full processor also saves its
        # tokenizer, which must not replace the exported one (it holds the run's chat template).
        with tempfile.TemporaryDirectory() as scratch:
            processor.save_pretrained(scratch)
            for name in sorted(os.listdir(scratch)):
                if not os.path.exists(os.path.join(export_dir, name)):
                    shutil.move(os.path.join(scratch, name), os.path.join(export_dir, name))
                    written.append(name)
    logger.info("Processor files saved to %s: %s", export_dir, ", ".join(written) or "none")
    return written


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
