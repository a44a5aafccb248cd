"""LoRA through peft: new adapters, continuing an adapter, stacking adapters.

`adapter_name_or_path` (a list) is read as LLaMA-Factory does: when training without
`create_new_adapter`, every adapter but the last is merged into the base weights and the last one keeps
training; otherwise (inference, or create_new_adapter) all are merged and, when training, a fresh
adapter is created on top.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, cast

from ...errors import ConfigError
from ..llama_pro import expanded_block_modules
from ..vocab import needs_resize
from .composite import composite_parts, forbidden_modules, model_type

if TYPE_CHECKING:
    from ...config import Config
    from ...config.groups import DataArgs, FreezeArgs, LoraArgs, MethodArgs, ModelArgs

logger = logging.getLogger(__name__)

# The output layer LoRA never wraps under `lora_target: all`, by model type (default: lm_head).
_OUTPUT_LAYER = {"chatglm": "output_layer", "internlm2": "output"}


def setup_lora(model: Any, args: ModelArgs, method: MethodArgs, lora: LoraArgs, freeze: FreezeArgs, data: DataArgs,
               is_trainable: bool) -> Any:
    model, resumed = load_adapters(model, args, is_trainable, lora.create_new_adapter)
    if is_trainable and not resumed:
        model = _new_adapter(model, args, method, lora, freeze, data)
    return model


def load_adapters(model: Any, args: ModelArgs, is_trainable: bool, create_new_adapter: bool) -> tuple[Any, bool]:
    """Apply `adapter_name_or_path` (any peft adapter: LoRA or OFT, read from its adapter_config.json).

    Returns the model and whether its last adapter stays attached to keep training."""
    from peft import PeftModel

    adapters = list(args.adapter_name_or_path or [])
    if not adapters:
        return model, False
    to_resume = None
    if is_trainable and not create_new_adapter:
        to_merge, to_resume = adapters[:-1], adapters[-1]
    else:
        to_merge = adapters
    for path in to_merge:
        model = PeftModel.from_pretrained(model, _check_adapter(path), **_adapter_kwargs(args)).merge_and_unload()
    if to_merge:
        logger.info("Merged %d adapter(s) into the base weights: %s", len(to_merge), ",".join(to_merge))
    if to_resume is not None:
        model = PeftModel.from_pretrained(model, _check_adapter(to_resume), is_trainable=is_trainable,
                                          **_adapter_kwargs(args))
        logger.info("Continuing to train adapter %s", to_resume)
    return model, to_resume is not None


def _new_adapter(model: Any, args: ModelArgs, method: MethodArgs, lora: LoraArgs, freeze: FreezeArgs,
                 data: DataArgs) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    logger.info("Fine-tuning method: %s", "DoRA" if lora.use_dora else "LoRA")
    targets = lora_targets(model, lora, method)
    if method.use_llama_pro:
        targets = expanded_block_modules(model, targets, freeze.freeze_trainable_layers)
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        inference_mode=False,
        r=lora.lora_rank,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=targets,
        modules_to_save=modules_to_save(model, lora, args),
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora,
        # peft's annotation spells the fast-SVD choice literally ("pissa_niter_[number of iters]"); it accepts
        # any pissa_niter_<n>.
        init_lora_weights=cast(Any, _init_lora_weights(lora)),
    )
    if args.use_unsloth:
        from ..boosters import unsloth_peft_model

        return unsloth_peft_model(model, config, max_seq_length=data.cutoff_len)
    # peft keeps adapter weights in fp32 by default; pure_bf16 means no fp32 copy of anything.
    return get_peft_model(model, config, autocast_adapter_dtype=not method.pure_bf16)


def _init_lora_weights(lora: LoraArgs) -> bool | str:
    """peft's initialisation: plain LoRA (B = 0), or PiSSA from the principal singular vectors.

    PiSSA moves the top `lora_rank` singular components of each targeted weight into the adapter and leaves
    the residual in the base weight, so base + adapter still equals the original model at step 0.
    `pissa_iter` > 0 uses a fast randomised SVD with that many iterations, -1 the exact SVD.
    """
    if not lora.pissa_init:
        return True
    iterations = lora.pissa_iter
    if iterations == -1:
        logger.info("PiSSA initialisation with the exact SVD")
        return "pissa"
    if iterations < 1:
        raise ConfigError(f"pissa_iter: {iterations} is not a number of SVD iterations; use a positive "
                          "number (fast SVD) or -1 (exact SVD)")
    logger.info("PiSSA initialisation with %d fast-SVD iterations", iterations)
    return f"pissa_niter_{iterations}"


def lora_targets(model: Any, lora: LoraArgs, method: MethodArgs) -> list[str]:
    """Module names LoRA wraps: every linear layer for "all", else the user's names, checked."""
    return adapter_targets(model, list(lora.lora_target), "lora_target", method)


def adapter_targets(model: Any, requested: list[str], key: str, method: MethodArgs) -> list[str]:
    """Module names an adapter wraps (`key` is lora_target or oft_target, named in errors)."""
    linear = adaptable_linear_names(model, method)
    if requested == ["all"]:
        targets = sorted(linear)
        logger.info("%s (all linear layers): %s", key, ",".join(targets))
    else:
        all_names = [name for name, _ in model.named_modules()]
        for target in requested:
            if not _matches_any(target, all_names):
                raise ConfigError(f"{key}: module {target!r} is not in the model; "
                                  f"choose from: all, {', '.join(sorted(linear))}")
        targets = requested

    parts = composite_parts(model)
    if parts is None:
        return targets
    # Composite models: name full module paths so the adapter stays off the frozen vision tower / projector.
    blocked = forbidden_modules(model, method) | set(parts.lora_conflicts) | set(parts.projector)
    return [name for name, _ in model.named_modules()
            if _matches_any(name.split(".")[-1], targets) and not any(part in name for part in blocked)]


def linear_module_names(model: Any, cfg: Config) -> set[str]:
    """Short names of the linear layers LoRA may adapt (output layer, projector, frozen tower excluded)."""
    return adaptable_linear_names(model, cfg.method)


def adaptable_linear_names(model: Any, method: MethodArgs) -> set[str]:
    """linear_module_names for code that holds the method group."""
    output_layer = _OUTPUT_LAYER.get(model_type(model), "lm_head")
    excluded: set[str] = set()
    parts = composite_parts(model)
    if parts is not None:
        excluded.update(parts.projector)
        if method.freeze_vision_tower:
            excluded.update(parts.vision)
    names = set()
    for name, module in model.named_modules():
        kind = type(module).__name__
        if "Linear" not in kind or "Embedding" in kind:
            continue
        if name.split(".")[-1] in ("lm_head", output_layer) or any(key in name for key in excluded):
            continue
        names.add(name.split(".")[-1])
    return names


def modules_to_save(model: Any, lora: LoraArgs, args: ModelArgs) -> list[str] | None:
    """`additional_target` (fully trained, saved with the adapter); embeddings when the vocab grew."""
    extra = list(lora.additional_target or [])
    all_names = [name for name, _ in model.named_modules()]
    for name in extra:
        if not _matches_any(name, all_names):
            top_level = sorted({n.split(".")[-1] for n in all_names if n and not n.split(".")[-1].isdigit()})
            raise ConfigError(f"additional_target: module {name!r} is not in the model; "
                              f"choose from: {', '.join(top_level)}")
    if not extra and needs_resize(args):
        embeddings = {model.get_input_embeddings(), model.get_output_embeddings()}
        extra = sorted({name.split(".")[-1] for name, module in model.named_modules() if module in embeddings})
        logger.warning("Vocabulary was resized: training %s fully (saved with the adapter)", ",".join(extra))
    return extra or None


def _matches_any(target: str, module_names: list[str]) -> bool:
    # peft's rule for a plain name: the module name equals it or ends with "." + it.
    return any(name == target or name.endswith("." + target) for name in module_names)


def check_adapters(cfg: Config) -> None:
    """Every adapter path of cfg, checked before the base model's weights load (load_model calls this)."""
    for path in cfg.model.adapter_name_or_path or []:
        _check_adapter(path)


def _check_adapter(path: str) -> str:
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "adapter_config.json")):
        raise ConfigError(f"adapter_name_or_path: {path!r} has no adapter_config.json; "
                          "point it at a directory saved by a LoRA or OFT run (its output_dir or a checkpoint-N)")
    if not os.path.isdir(path) and path.startswith((".", "/", "~")):
        raise ConfigError(f"adapter_name_or_path: directory {path!r} does not exist")
    _check_not_randomised_pissa(path)
    return path


def _check_not_randomised_pissa(path: str) -> None:
    """A PiSSA adapter made with the fast (randomised) SVD cannot be reloaded: peft re-runs that SVD on the
    base model to rebuild the residual weights, and a new random draw gives other residuals (measured: logits
    off by ~7 on a tiny model). Exact-SVD PiSSA adapters ("pissa") reload exactly."""
    import json

    config_file = os.path.join(path, "adapter_config.json")
    if not os.path.isfile(config_file):
        return
    with open(config_file, encoding="utf-8") as handle:
        init = str(json.load(handle).get("init_lora_weights", ""))
    if not init.startswith("pissa_niter"):
        return
    # pissa_convert writes output_dir/pissa_converted; `path` is output_dir or one of its checkpoints.
    candidates = [os.path.join(path, "pissa_converted"),
                  os.path.join(os.path.dirname(os.path.normpath(path)), "pissa_converted")]
    converted = next((candidate for candidate in candidates if os.path.isdir(candidate)), None)
    fix = (f"load the plain LoRA adapter {converted!r} instead" if converted
           else "train with pissa_convert: true and load output_dir/pissa_converted (or use pissa_iter: -1)")
    raise ConfigError(f"adapter_name_or_path: {path!r} is a PiSSA adapter initialised with a randomised SVD "
                      f"({init}); reloading it would rebuild different base weights. {fix}")


def _adapter_kwargs(args: ModelArgs) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "cache_dir": args.cache_dir,
        "revision": args.model_revision,
        "token": args.hf_hub_token,
    }
    if args.adapter_folder:
        kwargs["subfolder"] = args.adapter_folder
    return kwargs
