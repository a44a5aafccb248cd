"""Load the tokenizer named by `model_name_or_path`, the way LLaMA-Factory 0.9.5 does.

Same arguments as LLaMA-Factory: fast tokenizer unless `use_fast_tokenizer: false` (falling back to the
other kind when one is missing), `split_special_tokens`, right padding for training, `cache_dir`,
`model_revision`, `trust_remote_code`, `hf_hub_token`; `model_max_length` is raised to at least
`cutoff_len` so long rows never trigger length warnings; `add_tokens` / `add_special_tokens` are added.
The template (data/templates) fixes eos/pad tokens afterwards.

A hub id that cannot be fetched (offline machine, typo, private repo) is a UserError that names the id and
says to pass a local directory, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..runtime import runtime
from .tokenizer_direct import load_direct, takes_direct_path

if TYPE_CHECKING:
    from ..config import Config


def load_tokenizer(cfg: Config) -> Any:
    """The tokenizer for cfg.model.model_name_or_path (a local folder, a GGUF file, or a hub id when online)."""
    model = cfg.model
    name = model.model_name_or_path
    if not name:
        raise ConfigError("model_name_or_path is not set: give the local folder of the model (or its "
                          "tokenizer), e.g. `model_name_or_path: models/Qwen2.5-0.5B-Instruct`")
    local = Path(name).expanduser()
    gguf_file = model.gguf_file
    if gguf_file is None and local.suffix.lower() == ".gguf":
        local, gguf_file = local.parent, local.name
    if gguf_file is not None and not (local / gguf_file).is_file():
        key = "gguf_file" if model.gguf_file else "model_name_or_path"
        raise ConfigError(f"{key}: the GGUF file {str(local / gguf_file)!r} does not exist (resolved "
                          f"to {(local / gguf_file).resolve()}); check the path")
    if not local.is_dir() and (local.is_absolute() or name.startswith((".", "~")) or local.exists()):
        raise ConfigError(f"model_name_or_path: the folder {name!r} does not exist (resolved to "
                          f"{local.resolve()}); check the path")
    use_fast = model.use_fast_tokenizer
    kwargs = {
        "trust_remote_code": model.trust_remote_code,
        "cache_dir": model.cache_dir,
        "revision": model.model_revision,
        "token": model.hf_hub_token,
        "padding_side": "right",
    }
    if gguf_file is not None:
        # Commands resolve a GGUF model to its dequantized cache folder first (model.with_local_model); a caller
        # that did not still gets the file's tokenizer.
        kwargs["gguf_file"] = gguf_file
    source = str(local) if local.is_dir() else name
    try:
        if gguf_file is None and local.is_dir() and takes_direct_path(local):
            kwargs.pop("trust_remote_code")  # AutoTokenizer consumes it too; the direct class never runs remote code
            tokenizer = load_direct(local, split_special_tokens=model.split_special_tokens, **kwargs)
        else:
            tokenizer = _load_auto(source, use_fast, model.split_special_tokens, kwargs)
    except (OSError, ValueError) as error:
        raise _load_error(name, local, error) from None

    cutoff_len = cfg.data.cutoff_len
    if tokenizer.model_max_length < cutoff_len:
        tokenizer.model_max_length = cutoff_len
    if model.add_tokens:
        tokenizer.add_tokens(list(model.add_tokens), special_tokens=False)
    if model.add_special_tokens:
        tokenizer.add_tokens(list(model.add_special_tokens), special_tokens=True)
    return tokenizer


def _load_auto(source: str, use_fast: bool, split_special_tokens: bool, kwargs: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, use_fast=use_fast, split_special_tokens=split_special_tokens,
                                             **kwargs)
    except ValueError:  # this model ships only the other kind of tokenizer
        return AutoTokenizer.from_pretrained(source, use_fast=not use_fast, **kwargs)


def _load_error(name: str, local: Path, error: Exception) -> ConfigError:
    if local.is_dir():
        return ConfigError(f"model_name_or_path: could not load a tokenizer from the folder {name!r}: {error}. "
                           "It needs tokenizer.json (or the files of a slow tokenizer) and tokenizer_config.json")
    if runtime().hub_offline:
        return ConfigError(f"model_name_or_path: {name!r} is not a local folder and the hub is offline "
                           "(HF_HUB_OFFLINE=1), so it cannot be downloaded. Download the model on a machine with "
                           "network access and set model_name_or_path to its local directory")
    return ConfigError(f"model_name_or_path: could not fetch the tokenizer of {name!r} from the hub ({error}). "
                       "Check the id (and hf_hub_token for private models), or pass a local directory")


def save_tokenizer_with_chat_template(tokenizer: Any, output_dir: str) -> None:
    """Write the chat template into tokenizer_config.json (not only chat_template.jinja, transformers 5's
    default), so tools that read the config (older transformers, GGUF converters) chat in the trained format."""
    tokenizer.save_pretrained(output_dir, save_jinja_files=False)
    jinja_file = os.path.join(output_dir, "chat_template.jinja")
    if getattr(tokenizer, "chat_template", None) and os.path.isfile(jinja_file):
        os.remove(jinja_file)  # one copy only: the config now holds it
