"""Load the model a run trains or serves: where it comes from, in which precision, with which attention.

`load_model(cfg, tokenizer)` is the single entry point. Order of work:
  1. resolve `model_name_or_path` (local dir, Hugging Face hub id, or ModelScope id),
  2. decide the compute dtype and the attention implementation, failing early where the device
     cannot honour the request,
  3. load the weights, grow the vocabulary if the tokenizer gained tokens,
  4. enable gradient checkpointing and attach the finetuning method (full / freeze / LoRA).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError
from ..runtime import runtime
from .adapters import apply_finetuning, count_parameters
from .adapters.lora import check_adapters
from .boosters import apply_liger, check_unsloth, check_v1_kernels, liger_patch, load_with_unsloth, resolve_attention
from .gguf import gguf_source, resolve_gguf
from .mixture_of_depths import apply_mixture_of_depths, check_mixture_of_depths
from .precision_patches import upcast_precision_layers, use_reentrant_checkpointing, warn_low_cpu_mem_usage
from .quantization import patch_bnb_layers, plan_quantization, quantize_loaded_model
from .rope import configure_rope
from .shift_attn import check_shift_attn, enable_shift_attn
from .vocab import resize_embeddings

if TYPE_CHECKING:
    from transformers import PretrainedConfig
    from ..config import Config
    from ..config.groups import ModelArgs

logger = logging.getLogger(__name__)


def load_model(cfg: Config, tokenizer: Any, is_trainable: bool = True) -> torch.nn.Module:
    """Return the model ready for training (or, with is_trainable=False, frozen in eval mode)."""
    args = cfg.model
    path = resolve_model_path(cfg)
    config = load_model_config(cfg, path)
    check_adapters(cfg)  # a wrong adapter path fails now, not after the base weights load
    configure_rope(config, args, cfg.data, is_trainable)
    check_shift_attn(config, args, is_trainable)
    check_mixture_of_depths(config, args)
    device = training_device(cfg)
    compute_dtype = resolve_compute_dtype(cfg, device)
    attention = resolve_attention(args, cfg.data, device, compute_dtype)
    quantization = plan_quantization(cfg.quantization, cfg.method, cfg.lora, config, device, compute_dtype,
                                     is_trainable)
    liger = liger_patch(args, config, device, is_trainable)
    check_v1_kernels(args, device, is_trainable)
    model_class = _model_class_for(config)
    warn_low_cpu_mem_usage(args)
    if liger is not None:
        apply_liger(liger, cfg.method.stage)

    # Mixed precision keeps weights in the compute dtype and upcasts only the trainable ones later
    # (as LLaMA-Factory does); fp32 training simply loads fp32.
    if check_unsloth(args, cfg.method, cfg.quantization):
        model = load_with_unsloth(args, cfg.data, cfg.method, cfg.quantization, path, config, compute_dtype,
                                  device, is_trainable)
    elif args.train_from_scratch:
        model = model_class.from_config(config, dtype=compute_dtype, attn_implementation=attention,
                                        trust_remote_code=args.trust_remote_code)
    else:
        extra = quantization.load_kwargs if quantization else {}
        model = model_class.from_pretrained(path, config=config, dtype=compute_dtype,
                                            attn_implementation=attention, **_hub_kwargs(args), **extra)
    if quantization is not None and quantization.quantize_after_load:
        quantize_loaded_model(model, quantization, device, compute_dtype)
    if quantization is not None and is_trainable:
        patch_bnb_layers(model)  # bitsandbytes layers that would fail in backward (see quantization.py)
    logger.info("Attention implementation: %s", model.config._attn_implementation)
    enable_shift_attn(model, args, is_trainable)
    model = apply_mixture_of_depths(model, args, path)

    resize_embeddings(model, tokenizer, args)

    if is_trainable:
        _prepare_for_training(model, args, use_reentrant_checkpointing(cfg.explicit))

    model = apply_finetuning(model, cfg, is_trainable)

    if is_trainable:
        model.train()
        trainable, total = count_parameters(model)
        message = (f"trainable params: {trainable:,} || all params: {total:,} || "
                   f"trainable%: {100 * trainable / total:.4f}")
    else:
        model.requires_grad_(False)
        model.eval()
        message = f"all params: {count_parameters(model)[1]:,}"
    logger.info(message)
    print(message)

    if args.print_param_status:
        for name, param in model.named_parameters():
            print(f"name: {name}, dtype: {param.dtype}, device: {param.device}, trainable: {param.requires_grad}")
    return model


def preflight_model(cfg: Config, is_trainable: bool = True) -> None:
    """Every model-side check that needs only config.json (precision, attention, quantization, boosters),
    so a request this machine cannot honour fails before the data is processed or any weights load."""
    path = resolve_model_path(cfg)
    config = load_model_config(cfg, path)
    device = training_device(cfg)
    compute_dtype = resolve_compute_dtype(cfg, device)
    resolve_attention(cfg.model, cfg.data, device, compute_dtype)
    plan_quantization(cfg.quantization, cfg.method, cfg.lora, config, device, compute_dtype, is_trainable)
    liger_patch(cfg.model, config, device, is_trainable)
    check_v1_kernels(cfg.model, device, is_trainable)
    check_unsloth(cfg.model, cfg.method, cfg.quantization)


# --- where the weights come from -----------------------------------------------------------------


def resolve_model_path(cfg: Config) -> str:
    """A local directory, or a hub id that transformers will fetch (ModelScope ids are downloaded here; a GGUF
    file is dequantized into its cache folder, model/gguf.py)."""
    name = cfg.model.model_name_or_path
    source = gguf_source(cfg.model)
    if source is not None:
        return resolve_gguf(source, cfg.data.template).folder
    if not name:
        raise ConfigError("model_name_or_path is not set: give a local model directory or a hub id "
                          "(e.g. model_name_or_path: ./my-model)")
    local = os.path.expanduser(name)
    if os.path.isdir(local):
        return local
    if _looks_like_path(name):
        raise ConfigError(f"model_name_or_path: directory {name!r} does not exist "
                          f"(resolved to {os.path.abspath(local)}); check the path")
    if runtime().hub == "ms_hub":
        return _download_from_modelscope(name, cfg.model)
    return name


def with_local_model(cfg: Config) -> Config:
    """The config with a ModelScope id replaced by its downloaded directory, so that the tokenizer and
    the model both load from disk; unchanged otherwise. A GGUF file is replaced by its dequantized cache folder
    (and, when `template` is not set, the tuneforge template its chat template renders like)."""
    source = gguf_source(cfg.model)
    if source is not None:
        resolved = resolve_gguf(source, cfg.data.template)
        changes: dict[str, Any] = {"model_name_or_path": resolved.folder, "gguf_file": None}
        if cfg.data.template is None and resolved.template is not None:
            changes["template"] = resolved.template
        return cfg.replace(**changes)
    path = resolve_model_path(cfg)
    if path == cfg.model.model_name_or_path:
        return cfg
    return cfg.replace(model_name_or_path=path)


def load_model_config(cfg: Config, path: str) -> Any:
    """The model's `config.json`, with a clear error when a hub id cannot be reached."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, **_hub_kwargs(cfg.model))
    except (OSError, ValueError) as error:
        if os.path.isdir(path):
            raise ConfigError(f"model_name_or_path: {path!r} is not a Hugging Face model directory "
                              f"({error}); it needs a config.json next to the weights") from None
        raise _hub_error(path, cfg.model, error) from None


def _hub_kwargs(args: ModelArgs) -> dict[str, Any]:
    return {
        "trust_remote_code": args.trust_remote_code,
        "cache_dir": args.cache_dir,
        "revision": args.model_revision,
        "token": args.hf_hub_token,
    }


def _hub_error(model_id: str, args: ModelArgs, error: Exception) -> ConfigError:
    offline = runtime().hub_offline
    why = "the hub is offline (HF_HUB_OFFLINE=1) and it is not in the local cache" if offline else f"{error}"
    local_name = model_id.rstrip("/").split("/")[-1]
    return ConfigError(
        f"model_name_or_path: cannot load {model_id!r} from the Hugging Face hub: {why}. "
        f"Download it where there is network (`huggingface-cli download {model_id} --local-dir "
        f"./{local_name}`) and set model_name_or_path: ./{local_name}"
        + (f" (cache_dir: {args.cache_dir})" if args.cache_dir else "")
    )


def _download_from_modelscope(model_id: str, args: ModelArgs) -> str:
    """ModelScope snapshot into `cache_dir` (or MODELSCOPE_CACHE, which modelscope itself reads)."""
    if importlib.util.find_spec("modelscope") is None:
        raise ConfigError("USE_MODELSCOPE_HUB=1 needs the modelscope package: pip install modelscope "
                          "(or unset USE_MODELSCOPE_HUB to use the Hugging Face hub)")
    from modelscope import snapshot_download

    # ModelScope names the default branch "master" where the HF hub says "main".
    revision = "master" if args.model_revision == "main" else args.model_revision
    try:
        if args.ms_hub_token:
            from modelscope.hub.api import HubApi

            HubApi().login(args.ms_hub_token)
        return snapshot_download(model_id, revision=revision, cache_dir=args.cache_dir)
    except Exception as error:  # modelscope raises many unrelated types for "no network"
        cache = args.cache_dir or os.environ.get("MODELSCOPE_CACHE", "~/.cache/modelscope")
        local_name = model_id.rstrip("/").split("/")[-1]
        raise ConfigError(
            f"model_name_or_path: cannot download {model_id!r} from ModelScope ({error}); cache: {cache}. "
            f"Download it where there is network (`modelscope download --model {model_id} --local_dir "
            f"./{local_name}`) and set model_name_or_path: ./{local_name}"
        ) from None


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else that is not an existing directory is a bad path.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _model_class_for(config: PretrainedConfig) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoModelForSeq2SeqLM

    if type(config) in AutoModelForImageTextToText._model_mapping.keys():
        return AutoModelForImageTextToText
    if getattr(config, "model_type", None) == "qwen2_audio":
        # Audio-text models sit in transformers' seq2seq table (LLaMA-Factory loads them through it too); the
        # table also holds encoder-decoder text models, which tuneforge does not train, so only this one.
        return AutoModelForSeq2SeqLM
    return AutoModelForCausalLM


# --- precision and attention ---------------------------------------------------------------------


def training_device(cfg: Config) -> str:
    """"cuda" when a GPU is usable for this run, else "cpu"."""
    if cfg.train.use_cpu:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_compute_dtype(cfg: Config, device: str) -> torch.dtype:
    """Map bf16 / fp16 / pure_bf16 / (none = fp32) to a dtype, refusing what the device would fake."""
    bf16, fp16, pure_bf16 = cfg.train.bf16, cfg.train.fp16, cfg.method.pure_bf16
    if fp16 and (bf16 or pure_bf16):
        raise ConfigError("fp16 and bf16/pure_bf16 are both set: choose one precision")
    if fp16:
        if device == "cpu":
            raise ConfigError(
                "fp16: true on a CPU: transformers would silently train in fp32 instead. "
                "Remove fp16 (fp32 training) or use bf16: true (runs on CPU, slowly on CPUs without bf16 support)"
            )
        return torch.float16
    if bf16 or pure_bf16:
        key = "pure_bf16" if pure_bf16 else "bf16"
        if device == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"{key}: true but this GPU does not support bfloat16: use fp16: true instead")
        if device == "cpu":
            logger.warning("%s on a CPU works but is usually slower than fp32 (few CPUs have fast bf16 math)", key)
        return torch.bfloat16
    return torch.float32


# --- training preparation ------------------------------------------------------------------------


def _prepare_for_training(model: Any, args: ModelArgs, use_reentrant: bool) -> None:
    """Gradient checkpointing (on unless disabled) and LLaMA-Factory's optional fp32 upcasts."""
    upcast_precision_layers(model, args)
    if args.disable_gradient_checkpointing:
        return
    if args.use_unsloth:
        return  # unsloth turned on its own (offloaded) gradient checkpointing while loading
    if not getattr(model, "supports_gradient_checkpointing", False):
        logger.warning("This model does not support gradient checkpointing; training without it")
        return
    # transformers 5 renamed gradient checkpointing to activation checkpointing (the old name warns).
    kwargs = {"use_reentrant": use_reentrant}
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False
    logger.info("Gradient checkpointing enabled (%s)", "reentrant" if use_reentrant else "non-reentrant")
