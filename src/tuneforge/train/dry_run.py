"""`tuneforge train --dry-run CFG`: what a training run would do, in seconds, without loading weights or data.

    dry_run_report(cfg) -> str

The plan (stage, method, model, data rows and a token estimate, steps, devices, launcher, output) and the
memory estimate, computed from the model's config.json with the arithmetic of memory_formula.py (a llama-style
decoder; weights, gradients, optimizer state, activations at batch x cutoff_len). Nothing here imports torch:
the config is read as JSON, rows are counted from the files, tokens are estimated by tokenizing the first
rows with the model's tokenizer.json through the `tokenizers` library.
"""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .memory_formula import DecoderShape, MemoryEstimate, activation_bytes_for, optimizer_state_bytes_for

if TYPE_CHECKING:
    from ..config import Config
    from ..config.groups import DataArgs
    from ..data.registry import DatasetAttr

SAMPLE_ROWS = 200  # rows tokenized per dataset for the token estimate
JSON_COUNT_LIMIT = 256 * 2**20  # larger JSON lists get a row count estimated from their size
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class DataEstimate:
    name: str
    rows: int | None  # None: not countable without reading it (hub dataset, unknown format)
    exact: bool
    tokens_per_row: float | None


# ------------------------------------------------------------------------------------------------ model


def model_folder(cfg: Config) -> str:
    """The local folder holding config.json (and tokenizer.json) for cfg's model, without loading anything."""
    from ..model.gguf import file_sha256, gguf_source
    from ..runtime import runtime

    name = cfg.model.model_name_or_path or ""
    source = gguf_source(cfg.model)
    if source is not None:
        if not os.path.isfile(source.path):
            raise ConfigError(f"{source.key}: the GGUF file {source.path!r} does not exist; check the path")
        folder = os.path.join(runtime().cache_root, "gguf", file_sha256(source.path))
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise ConfigError(f"{source.key}: {source.path!r} has not been converted yet (the first `tuneforge "
                              "train`, `chat` or `data check` with it does that, once); the dry run reads the "
                              f"converted folder's config.json ({folder})")
        return folder
    path = os.path.expanduser(name)
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json", cache_dir=cfg.model.cache_dir)
    if isinstance(cached, str):
        return os.path.dirname(cached)
    raise ConfigError(f"model_name_or_path: no config.json in {name!r} (as a folder or in the hub cache); the dry "
                      "run reads the model's config.json without downloading anything. Download the model first")


def decoder_shape_from_json(config: dict[str, Any]) -> DecoderShape:
    text = config.get("text_config") or config  # multimodal models keep the language model's sizes apart
    try:
        hidden, heads = int(text["hidden_size"]), int(text["num_attention_heads"])
        head_dim = int(text.get("head_dim") or hidden // heads)
        return DecoderShape(hidden=hidden, layers=int(text["num_hidden_layers"]), heads=heads, head_dim=head_dim,
                            kv=int(text.get("num_key_value_heads") or heads) * head_dim,
                            inter=int(text.get("intermediate_size") or 4 * hidden), vocab=int(text["vocab_size"]),
                            tie_word_embeddings=bool(config.get("tie_word_embeddings",
                                                                text.get("tie_word_embeddings", False))))
    except KeyError as missing:
        raise ConfigError(f"model config.json has no {missing} (the dry run's estimate needs a decoder config "
                          "with hidden_size, num_attention_heads, num_hidden_layers, vocab_size)") from None


# ------------------------------------------------------------------------------------------------ memory


def estimate_from_shape(shape: DecoderShape, cfg: Config) -> MemoryEstimate:
    """Peak training memory per device for `shape` trained as cfg says, without building the model."""
    method, train = cfg.method, cfg.train
    half = bool(train.bf16 or train.fp16 or method.pure_bf16)
    element = 2 if half else 4
    trainable_element = 2 if method.pure_bf16 else 4  # trainable parameters are upcast to fp32 unless pure_bf16
    linears = shape.linear_shapes()
    linear_params = shape.layers * sum(out * inp for out, inp in linears.values())
    other_params = shape.parameters() - linear_params

    trainable: list[tuple[tuple[int, ...], int]] = []
    lora_per_layer = 0
    layers_with_backward = shape.layers
    kind = method.finetuning_type
    if kind == "full":
        trainable = [((shape.parameters(),), trainable_element)]
        frozen_linear, frozen_other = 0, 0
    elif kind == "freeze":
        count = cfg.freeze.freeze_trainable_layers
        chosen = min(abs(count), shape.layers)
        trainable = [((chosen * shape.layer_parameters(),), trainable_element)]
        frozen_linear = (shape.layers - chosen) * sum(out * inp for out, inp in linears.values())
        frozen_other = other_params - chosen * 2 * shape.hidden
        layers_with_backward = chosen if count > 0 else shape.layers
    else:  # lora / oft: adapters on the target modules of every layer
        rank = cfg.lora.lora_rank
        for module in _lora_targets(cfg.lora.lora_target, linears):
            out, inp = linears[module]
            trainable += [((rank, inp), trainable_element), ((out, rank), trainable_element)] * shape.layers
            lora_per_layer += rank + (inp if cfg.lora.lora_dropout > 0 else 0)
        frozen_linear, frozen_other = linear_params, other_params

    bits = cfg.quantization.quantization_bit
    linear_bytes = frozen_linear * bits / 8 if bits else frozen_linear * element
    rotary_buffers = shape.head_dim * 4  # transformers keeps inv_freq and original_inv_freq (head_dim / 2 each, fp32)
    weights = int(linear_bytes + frozen_other * element + sum(math.prod(s) * e for s, e in trainable)) + rotary_buffers
    seq = cfg.data.cutoff_len
    tokens = int(train.per_device_train_batch_size) * seq
    activations = activation_bytes_for(
        shape, seq, tokens, element, eager_attention=cfg.model.flash_attn == "disabled",
        lora_per_layer=lora_per_layer, layers_with_backward=layers_with_backward,
        checkpointing=not cfg.model.disable_gradient_checkpointing)
    return MemoryEstimate(weights=weights, gradients=sum(math.prod(s) * e for s, e in trainable),
                          optimizer=optimizer_state_bytes_for(trainable, str(train.optim)),
                          activations=activations, tokens=tokens,
                          note="from config.json: llama-style decoder arithmetic, no weights loaded")


def _lora_targets(targets: list[str] | None, linears: dict[str, tuple[int, int]]) -> list[str]:
    names = list(targets or ["all"])
    if "all" in names:
        return list(ALL_LINEAR)
    unknown = [name for name in names if name not in linears]
    if unknown:
        raise ConfigError(f"lora_target: the dry run's estimate knows the llama-style module names "
                          f"{', '.join(ALL_LINEAR)}; {', '.join(unknown)} is not one of them")
    return names


# -------------------------------------------------------------------------------------------------- data


def estimate_datasets(data: DataArgs, folder: str) -> list[DataEstimate]:
    """Rows of each training dataset (counted from its files) and the mean tokens per row of its first rows."""
    from ..data.registry import get_dataset_attrs

    tokenizer = _tokenizer(folder)
    estimates = []
    for attr in get_dataset_attrs(data.dataset, data.dataset_dir):
        rows, exact, sample = _count_rows(attr)
        if rows is not None and attr.num_samples is not None:
            rows, exact = attr.num_samples, True
        if rows is not None and data.max_samples is not None:
            rows = min(rows, data.max_samples)
        per_row = None
        if tokenizer is not None and sample:
            lengths = [min(len(encoding.ids), data.cutoff_len)
                       for encoding in tokenizer.encode_batch([_row_text(row) for row in sample])]
            per_row = sum(lengths) / len(lengths)
        estimates.append(DataEstimate(attr.name, rows, exact, per_row))
    return estimates


def _tokenizer(folder: str) -> Any:
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def _count_rows(attr: DatasetAttr) -> tuple[int | None, bool, list[Any]]:
    """(rows, exact, the first rows) of a local dataset; (None, False, []) for hub and script datasets."""
    if attr.load_from != "file" or not attr.path:
        return None, False, []
    files = sorted(glob.glob(os.path.join(attr.path, "**", "*"), recursive=True)) if os.path.isdir(attr.path) \
        else [attr.path]
    files = [file for file in files if os.path.isfile(file)]
    total, exact = 0, True
    sample: list[Any] = []
    for file in files:
        rows, file_exact, first = _file_rows(file)
        if rows is None:
            return None, False, sample
        total += rows
        exact = exact and file_exact
        sample = sample or first
    return total, exact, sample


def _file_rows(file: str) -> tuple[int | None, bool, list[Any]]:
    suffix = os.path.splitext(file)[1].lower()
    if suffix == ".jsonl":
        with open(file, "rb") as handle:
            rows = sum(1 for line in handle if line.strip())
        with open(file, encoding="utf-8") as handle:
            first = [json.loads(line) for line, _ in zip(handle, range(SAMPLE_ROWS)) if line.strip()]
        return rows, True, first
    if suffix == ".json":
        size = os.path.getsize(file)
        if size > JSON_COUNT_LIMIT:
            with open(file, encoding="utf-8") as handle:
                head = handle.read(4 * 2**20)
            per_row = max(1, len(head) // max(1, head.count('},')))
            return size // per_row, False, []
        with open(file, encoding="utf-8-sig") as handle:
            value = json.load(handle)
        items = value if isinstance(value, list) else [value]
        return len(items), True, items[:SAMPLE_ROWS]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(file)
        first = parquet.read_row_group(0).slice(0, SAMPLE_ROWS).to_pylist() if parquet.num_row_groups else []
        return parquet.metadata.num_rows, True, first
    if suffix == ".csv":
        with open(file, "rb") as handle:
            return max(0, sum(1 for _ in handle) - 1), True, []
    return None, False, []


def _row_text(row: Any) -> str:
    """Every text of a row joined (messages, instruction/input/output...): what the template wraps."""
    if isinstance(row, str):
        return row
    if isinstance(row, dict):
        return "\n".join(_row_text(value) for value in row.values())
    if isinstance(row, list):
        return "\n".join(_row_text(value) for value in row)
    return ""


# ------------------------------------------------------------------------------------------------ devices


def devices_and_launcher(cfg: Config) -> tuple[str, str]:
    """(devices, launcher). Without an NVIDIA device node the machine is a CPU one and torch is not imported."""
    from .launch.torchrun import wants_torchrun

    count = 0
    if not cfg.train.use_cpu and glob.glob("/dev/nvidia[0-9]*"):
        from .launch.torchrun import visible_device_count

        count = visible_device_count()
    devices = f"{count} GPU(s)" if count else f"cpu ({os.cpu_count()} cores)"
    deepspeed = bool(cfg.train.deepspeed)
    if wants_torchrun(os.environ, count, deepspeed):
        processes = os.environ.get("NPROC_PER_NODE") or str(max(count, 1))
        launcher = f"torchrun, {processes} process(es) per node" + (" with DeepSpeed" if deepspeed else "")
    else:
        launcher = "this process (no torchrun)"
    return devices, launcher


# ------------------------------------------------------------------------------------------------ report


def dry_run_report(cfg: Config) -> str:
    folder = model_folder(cfg)
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
        model_config = json.load(handle)
    shape = decoder_shape_from_json(model_config)
    estimate = estimate_from_shape(shape, cfg)
    data, train = cfg.data, cfg.train
    datasets = estimate_datasets(data, folder) if data.dataset and not data.tokenized_path else []
    devices, launcher = devices_and_launcher(cfg)

    architecture = (model_config.get("architectures") or [model_config.get("model_type", "?")])[0]
    lines = [
        "Dry run: nothing is loaded or trained.",
        f"stage:        {cfg.method.stage}",
        f"method:       {cfg.method.finetuning_type}" + (f" (rank {cfg.lora.lora_rank}, targets "
                                                          f"{','.join(cfg.lora.lora_target or ['all'])})"
                                                          if cfg.method.finetuning_type == "lora" else ""),
        f"model:        {cfg.model.model_name_or_path} ({architecture}, {shape.parameters() / 1e6:.1f}M parameters,"
        f" {shape.layers} layers, hidden {shape.hidden}, vocab {shape.vocab})",
        f"template:     {data.template or '(from the tokenizer)'}, cutoff_len {data.cutoff_len}",
    ]
    total_rows = 0
    for item in datasets:
        if item.rows is None:
            lines.append(f"data:         {item.name}: rows unknown until read (hub or script dataset)")
            continue
        total_rows += item.rows
        rows = f"{item.rows:,} rows" if item.exact else f"about {item.rows:,} rows"
        tokens = (f", about {item.rows * item.tokens_per_row:,.0f} tokens ({item.tokens_per_row:.0f}/row over "
                  f"the first rows, before the template)" if item.tokens_per_row is not None else "")
        lines.append(f"data:         {item.name}: {rows}{tokens}")
    if data.tokenized_path:
        lines.append(f"data:         tokenized dataset at {data.tokenized_path}")
    batch = int(train.per_device_train_batch_size) * int(train.gradient_accumulation_steps)
    if train.max_steps and train.max_steps > 0:
        steps = f"{train.max_steps} (max_steps)"
    elif total_rows and not data.streaming:
        per_epoch = math.ceil(total_rows / batch)
        steps = f"about {math.ceil(per_epoch * train.num_train_epochs):,} ({per_epoch:,} per epoch x " \
                f"{train.num_train_epochs:g} epochs, {batch} rows per step per device)"
    else:
        steps = "unknown"
    lines += [
        f"steps:        {steps}",
        f"devices:      {devices}",
        f"launcher:     {launcher}",
        f"output_dir:   {train.output_dir}",
        estimate.describe(),
    ]
    return "\n".join(lines)
