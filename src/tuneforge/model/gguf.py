"""GGUF checkpoints (llama.cpp, Ollama, LM Studio) as models: resolved once to a plain Hugging Face folder.

    gguf_source(args)     -> GgufSource | None   `model_name_or_path: x.gguf`, or a folder + `gguf_file: x.gguf`
    resolve_gguf(source)  -> ResolvedGguf        the cached HF folder (+ the tuneforge template matching the file)

transformers reads GGUF files itself (`from_pretrained(folder, gguf_file=name)`), dequantizing every tensor to
float32, but that takes long for a real model and the result refuses `save_pretrained` ("quantized with gguf").
So the first load copies the dequantized weights into a model built from the config (without its
`quantization_config`) and saves it with the file's tokenizer under
`<runtime().cache_root>/gguf/<sha256 of the file>/`; every later load, by any command, is a plain
`from_pretrained` of that folder. Problems (missing file, truncated file, an architecture transformers cannot
read from GGUF) are ConfigErrors raised before anything loads.

The file's chat template is compared with tuneforge's templates (data/templates) by rendering a few
conversations with both: a template that gives the same token ids is used when `template` is not set;
otherwise the file's own Jinja template is (the JinjaTemplate fallback).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..runtime import runtime

if TYPE_CHECKING:
    from ..config.groups import ModelArgs

logger = logging.getLogger(__name__)

GGUF_SUFFIX = ".gguf"
MARKER = "tuneforge_gguf.json"  # written last: a cache folder without it is incomplete
# Conversations rendered with the file's chat template and with each tuneforge template to find a match.
SAMPLE_CONVERSATIONS: tuple[tuple[str | None, tuple[tuple[str, str], ...]], ...] = (
    (None, (("user", "Hello, who are you?"), ("assistant", "I am a helpful assistant."))),
    ("You are a pirate.", (("user", "What is 2 + 2?"), ("assistant", "Four, matey."))),
    (None, (("user", "Hi"), ("assistant", "Hello!"), ("user", "Name a colour."), ("assistant", "Blue."))),
)


@dataclass(frozen=True)
class GgufSource:
    folder: str
    file_name: str
    key: str  # the config key that named the file, for error messages

    @property
    def path(self) -> str:
        return os.path.join(self.folder, self.file_name)


@dataclass(frozen=True)
class ResolvedGguf:
    folder: str  # a normal HF model folder: config.json, model.safetensors, tokenizer files
    template: str | None  # the tuneforge template that renders like the file's chat template, if any


def gguf_source(args: ModelArgs) -> GgufSource | None:
    """The GGUF file the model settings name, or None for an ordinary model folder / hub id."""
    name = args.model_name_or_path
    if args.gguf_file:
        folder = os.path.expanduser(name) if name else "."
        return GgufSource(folder, args.gguf_file, "gguf_file")
    if name and name.lower().endswith(GGUF_SUFFIX):
        path = os.path.expanduser(name)
        return GgufSource(os.path.dirname(path) or ".", os.path.basename(path), "model_name_or_path")
    return None


def resolve_gguf(source: GgufSource, configured_template: str | None = None) -> ResolvedGguf:
    """The cached HF folder of this GGUF file, dequantizing it on first use. A file already in the cache (same
    content hash) is not parsed again: reading a real file's header and vocabulary alone takes seconds.
    `configured_template` is the user's `template` key: it wins over the file's chat template, and the log says so."""
    _check_file_exists(source)
    folder = os.path.join(runtime().cache_root, "gguf", file_sha256(source.path))
    marker_path = os.path.join(folder, MARKER)
    if not os.path.isfile(marker_path):
        types = check_gguf_file(source)
        logger.info("Dequantizing %s (%s) to float32, once: later loads use the cache %s", source.path,
                    describe_types(types), folder)
        _build_cache(source, folder, types)
    with open(marker_path, encoding="utf-8") as handle:
        marker = json.load(handle)
    logger.info("GGUF model %s: weights dequantized from %s, loaded from the cache %s", source.path,
                describe_types(Counter(marker["tensor_types"])), folder)
    template = marker.get("template")
    _log_template_choice(template, bool(marker.get("has_chat_template")), configured_template)
    return ResolvedGguf(folder, template)


def _log_template_choice(matched: str | None, has_chat_template: bool, configured: str | None) -> None:
    # Say which template the run will use; warning about the file's template only matters when it is the one used.
    if configured is not None:
        if matched == configured:
            logger.info("GGUF chat template renders exactly like the configured template %r", configured)
        else:
            if not has_chat_template:
                found = "the GGUF file has no chat template"
            elif matched:
                found = f"the GGUF file's chat template renders like tuneforge's {matched!r} and is not used"
            else:
                found = "the GGUF file's own chat template is not used"
            logger.info("Using the configured template %r (%s)", configured, found)
        return
    if matched:
        logger.info("GGUF chat template renders exactly like tuneforge's %r template: using it (`template` is not "
                    "set)", matched)
    elif has_chat_template:
        logger.warning("GGUF chat template matches no tuneforge template: using the file's own Jinja chat "
                       "template (`template` is not set)")


# --- checks before anything loads -----------------------------------------------------------------


def supported_architectures() -> list[str]:
    """The GGUF `general.architecture` values transformers can turn into a model."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))


def _transformers_architecture(arch: str) -> str:
    # llama.cpp spells a few architectures differently; transformers renames them the same way when loading.
    renamed = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2",
               "t5encoder": "t5"}
    return renamed.get(arch, arch)


def _check_file_exists(source: GgufSource) -> None:
    _require_gguf_package()
    path = source.path
    if not os.path.isdir(source.folder):
        raise ConfigError(f"model_name_or_path: the folder {source.folder!r} of the GGUF file does not exist "
                          f"(resolved to {os.path.abspath(source.folder)}); check the path")
    if not os.path.isfile(path):
        present = sorted(f for f in os.listdir(source.folder) if f.lower().endswith(GGUF_SUFFIX))
        hint = f"; GGUF files there: {', '.join(present)}" if present else "; the folder holds no .gguf file"
        raise ConfigError(f"{source.key}: the GGUF file {path!r} does not exist (resolved to "
                          f"{os.path.abspath(path)}){hint}")


def check_gguf_file(source: GgufSource) -> Counter[str]:
    """A readable, complete GGUF file of an architecture transformers can load (ConfigError otherwise); returns
    how many tensors it holds of each GGML type (Q4_1, Q8_0, F16, F32, ...)."""
    _check_file_exists(source)
    reader = _reader(source)
    field = reader.get_field("general.architecture")
    if field is None:
        raise ConfigError(f"{source.key}: {source.path!r} has no general.architecture entry: not a model GGUF "
                          "file, or a corrupt one")
    arch = str(field.contents())
    supported = supported_architectures()
    if _transformers_architecture(arch) not in supported:
        raise ConfigError(f"{source.key}: {source.path!r} holds a {arch!r} model, which transformers cannot load "
                          f"from GGUF; supported architectures: {', '.join(supported)}. Use the original Hugging "
                          "Face checkpoint of this model instead")
    return Counter(tensor.tensor_type.name for tensor in reader.tensors)


def _require_gguf_package() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ConfigError("loading a .gguf model needs the `gguf` package: pip install gguf") from None


def _reader(source: GgufSource) -> Any:
    """The file's GGUFReader, after checking every tensor's data lies inside the file (a cut-off download
    still parses its header)."""
    from gguf import GGUFReader

    path = source.path
    corrupt = (f"{source.key}: cannot read the GGUF file {path!r}: it is truncated or corrupt "
               "(an interrupted download or copy?); download or export it again")
    try:
        reader = GGUFReader(path)
    except Exception as error:  # the reader fails with many types (ValueError, struct/IndexError, OSError) on bad bytes
        raise ConfigError(f"{corrupt}. Reader error: {error}") from None
    size = os.path.getsize(path)
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise ConfigError(f"{corrupt}. The tensors need {end:,} bytes, the file has {size:,}")
    return reader


def describe_types(types: Counter[str]) -> str:
    """`Q4_1 (84 tensors), F32 (31 tensors)`: the most common type first."""
    return ", ".join(f"{name} ({count} tensors)" for name, count in types.most_common())


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str) -> str:
    """The file's SHA-256, computed once per process for an unchanged file."""
    stat = os.stat(path)
    return _sha256(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


# --- the cache ------------------------------------------------------------------------------------


def _build_cache(source: GgufSource, folder: str, types: Counter[str]) -> None:
    """Dequantize into a temporary folder next to `folder`, then move it in place (a crash leaves no half cache)."""
    staging = f"{folder}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        tokenizer = dequantize_to_folder(source, staging)
        marker = {"source": os.path.abspath(source.path), "tensor_types": dict(types),
                  "has_chat_template": isinstance(getattr(tokenizer, "chat_template", None), str),
                  "template": matching_template(tokenizer)}
        with open(os.path.join(staging, MARKER), "w", encoding="utf-8") as handle:
            json.dump(marker, handle, indent=2)
        if os.path.isfile(os.path.join(folder, MARKER)):
            return  # another process (e.g. another rank) finished the same file first: keep its folder
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete earlier attempt
        try:
            os.replace(staging, folder)
        except OSError:
            if not os.path.isfile(os.path.join(folder, MARKER)):
                raise  # not a lost race: a real problem with the cache folder
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def dequantize_to_folder(source: GgufSource, folder: str) -> Any:
    """Save the GGUF file as a float32 HF model + tokenizer in `folder`; returns the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..data import save_tokenizer_with_chat_template

    # transformers mixes tokenizer files lying next to the GGUF file into its tokenizer (losing the file's eos
    # token and chat template): load from a folder that holds only a link to the file.
    with tempfile.TemporaryDirectory() as alone:
        os.symlink(os.path.abspath(source.path), os.path.join(alone, source.file_name))
        try:
            loaded = AutoModelForCausalLM.from_pretrained(alone, gguf_file=source.file_name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(alone, gguf_file=source.file_name)
        except (ValueError, KeyError, RuntimeError, OSError) as error:
            raise ConfigError(f"{source.key}: transformers could not load {source.path!r} from GGUF: "
                              f"{error}") from None
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # else save_pretrained refuses the model as "quantized with gguf"
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(folder)
    if loaded.generation_config is not None:
        loaded.generation_config.save_pretrained(folder)
    save_tokenizer_with_chat_template(tokenizer, folder)
    return tokenizer


# --- which tuneforge template the file's chat template is ----------------------------------------


def matching_template(tokenizer: Any) -> str | None:
    """The first tuneforge template (by name) that renders every sample conversation to the same token ids as
    the tokenizer's own chat template; None when the tokenizer has none or none matches."""
    if not isinstance(getattr(tokenizer, "chat_template", None), str):
        return None
    expected = _jinja_ids(tokenizer)
    if expected is None:
        return None
    from ..data.templates import TEMPLATES, get_template

    for name in sorted(TEMPLATES):
        template = TEMPLATES[name]
        if template.media or _template_ids(template, tokenizer) != expected:
            continue  # cheap first pass: the template as is, on the file's tokenizer
        fixed_tokenizer = copy.deepcopy(tokenizer)  # the full setup (eos / stop words) changes the tokenizer
        try:
            fixed = get_template(name, fixed_tokenizer)
        except Exception:  # a template that cannot be set up for this tokenizer does not match it
            continue
        if _template_ids(fixed, fixed_tokenizer) == expected:
            return name
    return None


def _messages(turns: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in turns]


def _jinja_ids(tokenizer: Any) -> list[list[int]] | None:
    rendered = []
    for system, turns in SAMPLE_CONVERSATIONS:
        messages = ([{"role": "system", "content": system}] if system else []) + _messages(turns)
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False)
        except Exception:  # a template that cannot render plain chats has no tuneforge equivalent
            return None
        rendered.append(tokenizer.encode(text, add_special_tokens=False))
    return rendered


def _template_ids(template: Any, tokenizer: Any) -> list[list[int]] | None:
    rendered = []
    for system, turns in SAMPLE_CONVERSATIONS:
        try:
            pairs = template.encode_multiturn(tokenizer, _messages(turns), system)
        except Exception:  # e.g. a template needing tokens this tokenizer lacks
            return None
        rendered.append([token for prompt, answer in pairs for token in (*prompt, *answer)])
    return rendered
