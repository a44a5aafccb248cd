"""Write the exported model as one GGUF file (llama.cpp, Ollama, LM Studio) with the `gguf` package's writer.

    write_gguf(model, export_dir, kind) -> path of <export_dir>/model-<kind>.gguf      kind: f32, f16 or q8_0

Supported: decoder-only `llama` and `qwen2` checkpoints with a byte-level BPE tokenizer (Llama 3, Qwen2/2.5,
and our tiny test models). The facts llama.cpp expects, which this file follows:
  - tensor names come from gguf's own HF -> GGUF name map (`gguf.get_tensor_name_map`);
  - llama's q/k projection rows are reordered from HF's rotate-half RoPE layout to GGML's interleaved one
    (per head: rows [0..d/2) and [d/2..d) are interleaved); qwen2 runs NeoX-style RoPE in GGML and is kept
    as is;
  - 1-D tensors (norms, biases) stay float32; 2-D weights take the requested type (q8_0 needs rows that are
    a multiple of 32 long, others fall back to f16);
  - a tied lm_head is not written: llama.cpp reuses token_embd;
  - the vocabulary is the tokenizer's id order, padded with [PAD<i>] (unused) up to the embedding size;
    merges, special ids and the chat template come from the exported tokenizer files (gguf.SpecialVocab).
Other architectures and SentencePiece tokenizers raise a UserError that points at llama.cpp's converter.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import ConfigError, UserError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

logger = logging.getLogger(__name__)

GGUF_KINDS = ("f32", "f16", "q8_0")
ARCHITECTURES = ("llama", "qwen2")
# The pre-tokenizer name llama.cpp uses for each architecture's byte-level BPE (Llama 3, Qwen2).
PRE_TOKENIZER = {"llama": "llama-bpe", "qwen2": "qwen2"}
CONVERTER_HINT = "use llama.cpp's convert_hf_to_gguf.py on the exported folder instead"


def _gguf():
    try:
        import gguf
    except ImportError:
        raise UserError("export_gguf needs the `gguf` package: pip install 'tuneforge[gguf]'") from None
    return gguf


def check_gguf_export(model_config: Any, tokenizer_dir: str | None = None) -> None:
    """Refuse what this writer cannot convert, before any weights load."""
    _gguf()
    model_type = getattr(model_config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ConfigError(f"export_gguf: architecture {model_type!r} is not supported (supported: "
                          f"{', '.join(ARCHITECTURES)}); {CONVERTER_HINT}")
    rope = getattr(model_config, "rope_parameters", None) or getattr(model_config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type not in (None, "default"):
        raise ConfigError(f"export_gguf: RoPE scaling {rope_type!r} is not written by this exporter; {CONVERTER_HINT}")
    if tokenizer_dir is not None:
        check_tokenizer(tokenizer_dir)


def check_tokenizer(tokenizer_dir: str) -> None:
    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"export_gguf: {tokenizer_dir} has no tokenizer.json (a fast tokenizer); {CONVERTER_HINT}")
    spec = json.loads(path.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise UserError("export_gguf: only byte-level BPE tokenizers (GPT-2 style, as Llama 3 and Qwen2 use) are "
                        f"supported; this one is {model.get('type')} ({CONVERTER_HINT})")


def write_gguf(model: Any, export_dir: str, kind: str = "f16") -> str:
    """Write <export_dir>/model-<kind>.gguf from the model and the tokenizer files already in export_dir."""
    gguf = _gguf()
    if kind not in GGUF_KINDS:
        raise ConfigError(f"export_gguf: {kind!r} is not a GGUF type this exporter writes; use one of "
                          f"{', '.join(GGUF_KINDS)}")
    config = model.config
    check_gguf_export(config, export_dir)
    arch = config.model_type
    path = os.path.join(export_dir, f"model-{kind}.gguf")
    writer = gguf.GGUFWriter(path, arch)
    _write_metadata(writer, gguf, config, kind, os.path.basename(os.path.normpath(export_dir)))
    _write_vocabulary(writer, gguf, export_dir, arch, model.get_input_embeddings().weight.shape[0])
    _write_tensors(writer, gguf, model, arch, kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    logger.info("GGUF (%s) saved to %s", kind, path)
    return path


def _write_metadata(writer: Any, gguf: Any, config: PretrainedConfig, kind: str, name: str) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or {}
    rope_theta = rope.get("rope_theta") if isinstance(rope, dict) else None
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope_theta or getattr(config, "rope_theta", None) or 10000.0))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(file_types[kind])


def _write_vocabulary(writer: Any, gguf: Any, tokenizer_dir: str, arch: str, embedding_rows: int) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens: list[str] = []
    types = []
    for token_id in range(max(len(tokenizer), embedding_rows)):
        if token_id >= len(tokenizer):
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(str(tokenizer.convert_ids_to_tokens(token_id)))  # one id in: one token out
        if token_id in added:
            types.append(gguf.TokenType.CONTROL if added[token_id].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER[arch])
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(tokenizer_dir, load_merges=True, n_vocab=len(tokens))
    special.add_to_gguf(writer, quiet=True)  # merges, bos/eos/pad ids, add_bos flag, chat template


def reorder_for_ggml_rope(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """HF rotate-half row order -> GGML interleaved row order, per head (llama q/k projections)."""
    rows = weight.shape[0]
    return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _write_tensors(writer: Any, gguf: Any, model: Any, arch: str, kind: str) -> None:
    config = model.config
    names = gguf.get_tensor_name_map(_arch_enum(gguf, arch), config.num_hidden_layers)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(f"export_gguf: no GGUF name for tensor {hf_name!r}; {CONVERTER_HINT}")
        data = tensor.detach().to("cpu", torch.float32)
        if arch == "llama" and hf_name.endswith("self_attn.q_proj.weight"):
            data = reorder_for_ggml_rope(data, heads)
        elif arch == "llama" and hf_name.endswith("self_attn.k_proj.weight"):
            data = reorder_for_ggml_rope(data, kv_heads)
        _add_tensor(writer, gguf, gguf_name, data.numpy(), kind)


def _arch_enum(gguf: Any, arch: str) -> Any:
    return next(key for key, value in gguf.MODEL_ARCH_NAMES.items() if value == arch)


def _add_tensor(writer: Any, gguf: Any, name: str, array: np.ndarray, kind: str) -> None:
    if array.ndim < 2 or kind == "f32":
        writer.add_tensor(name, array.astype(np.float32))
    elif kind == "q8_0" and array.shape[-1] % 32 == 0:
        qtype = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(array.astype(np.float32), qtype), raw_dtype=qtype)
    else:
        writer.add_tensor(name, array.astype(np.float16))
