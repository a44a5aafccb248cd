"""Rules that involve several keys (LLaMA-Factory 0.9.5's cross-field checks, same conditions).

Each rule reads the resolved values (defaults and computed defaults applied) and adds a problem that
names the keys and says what to change. Rules about a training run only apply when the config asks for
one (do_train / do_eval / do_predict), so an inference or export config is not held to them.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from .optimizer_checks import optimizer_rules

logger = logging.getLogger(__name__)

LORA_ONLY = ("loraplus_lr_ratio", "use_rslora", "use_dora", "pissa_init")
# LLaMA-Factory main's token-weighted SFT losses (train/sft_losses.py).
SFT_LOSSES = ("use_dft_loss", "use_eaft_loss", "use_asft_loss")


def check_all(v: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for rule in (_data_rules, _method_rules, _model_rules, _oft_rules, _deepspeed_rules, optimizer_rules):
        problems += rule(v)
    if is_training_run(v):
        problems += _training_run_rules(v) + _preference_rules(v) + _lf_switch_rules(v)
    return problems


# Preference keys and the stages that read them; set elsewhere they would be silently ignored.
PREFERENCE_KEYS = {
    "pref_beta": ("dpo", "kto"), "pref_ftx": ("dpo", "kto"), "pref_loss": ("dpo",), "dpo_label_smoothing": ("dpo",),
    "pref_bco_weight": ("dpo",), "simpo_gamma": ("dpo",), "ld_alpha": ("dpo",), "kto_chosen_weight": ("kto",),
    "kto_rejected_weight": ("kto",), "ref_model": ("dpo", "kto", "ppo", "grpo"),
    "ref_model_adapters": ("dpo", "kto", "ppo", "grpo"), "ref_model_quantization_bit": ("dpo", "kto", "ppo", "grpo"),
    **{key: ("grpo",) for key in (
        "num_generations", "max_completion_length", "reward_funcs", "reward_weights", "beta", "epsilon",
        "epsilon_high", "num_iterations", "loss_type", "importance_sampling_level", "scale_rewards",
        "mask_truncated_completions", "dynamic_sampling", "max_resample_times", "soft_max_length",
        "soft_cache_length", "use_vllm", "vllm_mode")},
}


def _preference_rules(v: dict[str, Any]) -> list[str]:
    from .schema import all_params

    params = all_params()
    stage = v["stage"]
    problems = []
    for key, stages in PREFERENCE_KEYS.items():
        # ASFT (stage sft) compares with a reference model too (train/sft_losses.py).
        is_reference_key, asft = key.startswith("ref_model"), ""
        if is_reference_key and v["use_asft_loss"]:
            stages = (*stages, "sft")
        elif is_reference_key:
            asft = " (or sft with use_asft_loss)"
        if stage not in stages and v.get(key) != params[key].default:
            problems.append(f"{key} only applies to stage {' or '.join(stages)}{asft} (stage is {stage!r}); "
                            "remove it.")
    if stage == "dpo" and v["pref_loss"] in ("orpo", "simpo"):
        if v["ref_model"] is not None:
            problems.append(f"pref_loss {v['pref_loss']!r} uses no reference model; remove ref_model.")
        if v["pref_bco_weight"] > 1e-6:
            problems.append(f"pref_bco_weight needs a reference model, which pref_loss {v['pref_loss']!r} does "
                            "not use; remove pref_bco_weight or choose sigmoid, hinge, ipo or kto_pair.")
    if stage == "dpo" and v["pref_loss"] != "simpo" and v["simpo_gamma"] != params["simpo_gamma"].default:
        problems.append(f"simpo_gamma only applies to pref_loss simpo (it is {v['pref_loss']!r}); remove it.")
    if v["ref_model_adapters"] is not None and v["ref_model"] is None:
        problems.append("ref_model_adapters needs ref_model (the model those adapters belong to).")
    if v["ref_model_quantization_bit"] is not None and v["ref_model"] is None and v["finetuning_type"] == "lora":
        problems.append("ref_model_quantization_bit: with LoRA and no ref_model the reference is the policy with "
                        "its adapter disabled, so there is no separate model to quantize; set ref_model or remove "
                        "ref_model_quantization_bit.")
    return problems


def is_training_run(v: dict[str, Any]) -> bool:
    eval_strategy = v.get("eval_strategy")
    return bool(v.get("do_train") or v.get("do_eval") or v.get("do_predict")
                or (eval_strategy not in (None, "no")))


def _data_rules(v: dict[str, Any]) -> list[str]:
    problems = []
    val_size = v["val_size"]
    if val_size < 0:
        problems.append(f"val_size: {val_size!r} is negative; use a fraction in [0, 1) or a row count.")
    if v["dataset"] is None and val_size > 1e-6:
        problems.append("val_size is set but dataset is not: the validation split is taken from `dataset`.")
    if v["eval_dataset"] is not None and val_size > 1e-6:
        problems.append("val_size and eval_dataset are both set; keep one (eval_dataset is used as is, "
                        "val_size splits `dataset`).")
    probs = v["interleave_probs"]
    if probs is not None:
        if v["mix_strategy"] == "concat":
            problems.append("interleave_probs needs an interleaved mix_strategy (interleave_under, "
                            "interleave_over or interleave_once); mix_strategy is 'concat'.")
        for key in ("dataset", "eval_dataset"):
            if v[key] is not None and len(v[key]) != len(probs):
                problems.append(f"interleave_probs has {len(probs)} values but {key} has {len(v[key])} "
                                f"datasets; give one probability per dataset.")
    if v["streaming"] and 1e-6 < val_size < 1:
        problems.append(f"val_size: with streaming the validation split must be a row count (an integer "
                        f">= 1), got {val_size!r}.")
    if v["streaming"] and v["max_samples"] is not None:
        problems.append("max_samples cannot be used with streaming; remove one of them.")
    if v["mask_history"] and v["train_on_prompt"]:
        problems.append("mask_history and train_on_prompt cannot both be true; mask_history trains on the "
                        "last answer only, train_on_prompt on everything.")
    if v["cutoff_len"] < 1:
        problems.append(f"cutoff_len: {v['cutoff_len']!r} must be a positive number of tokens.")
    if v["stage"] != "sft":
        stage = f"stage is {v['stage']!r}"
        for key in ("neat_packing", "train_on_prompt", "mask_history", "predict_with_generate"):
            if v.get(key):
                problems.append(f"{key} only works with stage sft ({stage}); remove it.")
    return problems


def _method_rules(v: dict[str, Any]) -> list[str]:
    problems = []
    stage, ftype = v["stage"], v["finetuning_type"]
    if stage == "ppo" and v["reward_model"] is None:
        problems.append("stage ppo needs reward_model (a path or hub id of the reward model).")
    if stage == "ppo" and v["reward_model_type"] == "lora" and ftype != "lora":
        problems.append(f"reward_model_type 'lora' needs finetuning_type lora (it is {ftype!r}); use "
                        "reward_model_type full or api.")
    if stage == "dpo" and v["pref_loss"] != "sigmoid" and v["dpo_label_smoothing"] > 1e-6:
        problems.append(f"dpo_label_smoothing only works with pref_loss sigmoid (it is {v['pref_loss']!r}).")
    if v["use_llama_pro"] and ftype == "full":
        problems.append("use_llama_pro needs finetuning_type freeze or lora, not full.")
    optimizers = [key for key in ("use_galore", "use_apollo", "use_badam") if v[key]]
    if ftype == "lora" and optimizers:
        problems.append(f"{', '.join(optimizers)} cannot be combined with LoRA; set finetuning_type full or "
                        "freeze.")
    if len(optimizers) > 1:
        problems.append(f"{' and '.join(optimizers)} are both set; choose one optimizer.")
    uses_ref_model = stage == "dpo" and v["pref_loss"] not in ("orpo", "simpo")
    if v["pissa_init"] and (stage in ("ppo", "kto") or uses_ref_model):
        problems.append(f"pissa_init cannot be used with stage {stage}"
                        f"{' and a reference model' if uses_ref_model else ''}.")
    if v["pissa_convert"] and v["use_dora"]:
        # peft rewrites A and B but not DoRA's magnitudes: the converted adapter would give other outputs.
        problems.append("pissa_convert cannot convert a DoRA adapter (the magnitude vectors do not carry over); "
                        "remove use_dora or pissa_convert.")
    if v["pissa_convert"] and not v["pissa_init"]:
        problems.append("pissa_convert converts a PiSSA adapter: set pissa_init: true as well (or remove "
                        "pissa_convert).")
    problems += _sft_loss_rules(v)
    if ftype != "lora":
        for key in LORA_ONLY:
            if v[key] not in (None, False):
                problems.append(f"{key} only works with finetuning_type lora (it is {ftype!r}).")
    return problems


def _sft_loss_rules(v: dict[str, Any]) -> list[str]:
    """use_dft_loss / use_eaft_loss / use_asft_loss (train/sft_losses.py): one of them, for stage sft."""
    chosen = [key for key in SFT_LOSSES if v[key]]
    if not chosen:
        return []
    problems = []
    if len(chosen) > 1:
        problems.append(f"{' and '.join(chosen)} are {'both' if len(chosen) == 2 else 'all'} set; choose one SFT "
                        "loss.")
    if v["stage"] != "sft":
        problems.append(f"{chosen[0]} replaces the loss of stage sft; stage is {v['stage']!r}.")
    if v.get("label_smoothing_factor"):
        problems.append(f"{chosen[0]} computes its own loss, so label_smoothing_factor would be ignored: remove "
                        "one of them.")
    return problems


def _model_rules(v: dict[str, Any]) -> list[str]:
    problems = []
    for media in ("image", "video"):
        low, high = v[f"{media}_min_pixels"], v[f"{media}_max_pixels"]
        if high < low:
            problems.append(f"{media}_max_pixels ({high}) is smaller than {media}_min_pixels ({low}).")
    if v["export_quantization_bit"] is not None and v["export_quantization_dataset"] is None:
        problems.append("export_quantization_bit needs export_quantization_dataset (calibration data).")
    adapters = v["adapter_name_or_path"]
    if adapters is not None and v["finetuning_type"] not in ("lora", "oft"):
        problems.append(f"adapter_name_or_path needs finetuning_type lora or oft (it is "
                        f"{v['finetuning_type']!r}).")
    if v["quantization_bit"] is not None:
        if v["finetuning_type"] not in ("lora", "oft"):
            problems.append("quantization_bit only works with finetuning_type lora or oft "
                            f"(it is {v['finetuning_type']!r}).")
        if v["use_dora"] and v["quantization_method"] != "bnb":
            problems.append(f"use_dora works on bitsandbytes-quantized models only (quantization_method is "
                            f"{v['quantization_method']!r}); use quantization_method bnb or plain LoRA.")
        if v["pissa_init"]:
            problems.append("pissa_init cannot initialise a quantized model; initialise PiSSA on the full "
                            "model first, then quantize.")
        if v["resize_vocab"]:
            problems.append("resize_vocab cannot resize the embeddings of a quantized model.")
        if adapters is not None and v["create_new_adapter"]:
            problems.append("create_new_adapter cannot add an adapter on top of a quantized model.")
        if adapters is not None and len(adapters) != 1:
            problems.append(f"a quantized model takes one adapter, got {len(adapters)} in "
                            "adapter_name_or_path; merge them first.")
    return problems


def _oft_rules(v: dict[str, Any]) -> list[str]:
    """peft's OFT rule in our keys: exactly one of oft_rank (number of blocks) and oft_block_size is set."""
    if v["finetuning_type"] != "oft":
        return []
    rank, block = v["oft_rank"], v["oft_block_size"]
    problems = []
    if rank < 0 or block < 0:
        problems.append(f"oft_rank ({rank}) and oft_block_size ({block}) cannot be negative.")
    elif (rank == 0) == (block == 0):
        problems.append(f"oft_rank ({rank}) and oft_block_size ({block}): set exactly one of them and the other "
                        "to 0 (LLaMA-Factory's default: oft_block_size 32, oft_rank 0).")
    if not 0.0 <= v["module_dropout"] < 1.0:
        problems.append(f"module_dropout ({v['module_dropout']}) is a probability; use a value in [0, 1).")
    return problems


def _deepspeed_rules(v: dict[str, Any]) -> list[str]:
    _, problem = read_deepspeed_config(v.get("deepspeed"))
    return [problem] if problem else []


def read_deepspeed_config(value: Any) -> tuple[dict | None, str | None]:
    """The DeepSpeed config as a dict (from a mapping, a JSON string or a file), or a problem."""
    if value is None or isinstance(value, dict):
        return value, None
    if not isinstance(value, str):
        return None, f"deepspeed: expected a JSON file path or a mapping, got {value!r}."
    if value.lstrip().startswith("{"):
        try:
            return json.loads(value), None
        except json.JSONDecodeError as error:
            return None, f"deepspeed: the JSON string is not valid JSON ({error.msg})."
    if not os.path.isfile(value):
        return None, (f"deepspeed: config file {value!r} not found (relative paths start at the current "
                      f"directory {os.getcwd()!r}).")
    try:
        with open(value, encoding="utf-8") as handle:
            config = json.load(handle)
    except json.JSONDecodeError as error:
        return None, f"deepspeed: {value!r} is not valid JSON (line {error.lineno}: {error.msg})."
    if not isinstance(config, dict):
        return None, f"deepspeed: {value!r} must hold a JSON object."
    return config, None


def _zero3(v: dict[str, Any]) -> bool:
    config, _ = read_deepspeed_config(v.get("deepspeed"))
    stage = ((config or {}).get("zero_optimization") or {}).get("stage")
    return stage == 3


def _lf_switch_rules(v: dict[str, Any]) -> list[str]:
    """LLaMA-Factory switches that transformers 5 or our recipes can only honour in some combinations."""
    problems = []
    if v["save_safetensors"] is False:
        problems.append("save_safetensors: false is not possible: transformers 5 always writes checkpoints as "
                        "safetensors (the .bin writer was removed). Remove the key; to get a .bin file of the "
                        "trained model, convert model.safetensors with torch.save(safetensors.torch.load_file(...)).")
    if v["early_stopping_steps"] is not None:
        if v["early_stopping_steps"] < 1:
            problems.append(f"early_stopping_steps: {v['early_stopping_steps']} must be at least 1 (the number "
                            "of evaluations without improvement before training stops).")
        if v["eval_strategy"] in (None, "no"):
            problems.append("early_stopping_steps needs evaluations during training: set eval_strategy: steps "
                            "(with eval_steps) or epoch.")
        if not v["metric_for_best_model"] and not v["load_best_model_at_end"]:  # that one implies eval_loss
            problems.append("early_stopping_steps needs the metric to watch: set metric_for_best_model (e.g. "
                            "eval_loss).")
    if v["disable_shuffling"] and v["group_by_length"]:
        problems.append("disable_shuffling and group_by_length are both set: a sequential order cannot also be "
                        "grouped by length; keep one.")
    ppo_ignores = [key for key in ("disable_shuffling", "early_stopping_steps", "include_effective_tokens_per_second")
                   if v[key] not in (None, False)]
    if v["stage"] == "ppo" and ppo_ignores:
        problems.append(f"{', '.join(ppo_ignores)}: stage ppo runs its own rollout loop (seeded shuffled prompts, "
                        "no evaluation), which does not honour this; remove it.")
    if v["compute_accuracy"] and v["stage"] != "sft":
        problems.append(f"compute_accuracy is reported by stage sft only (stage {v['stage']} would ignore it); "
                        "remove it.")
    return problems


def _training_run_rules(v: dict[str, Any]) -> list[str]:
    problems = []
    stage = v["stage"]
    zero3 = _zero3(v)
    if stage == "sft" and v["do_predict"] and not v["predict_with_generate"]:
        problems.append("do_predict with stage sft needs predict_with_generate: true to save predictions.")
    if stage in ("rm", "ppo") and v["load_best_model_at_end"]:
        problems.append(f"load_best_model_at_end is not supported with stage {stage}.")
    if stage == "ppo":
        if not v["do_train"]:
            problems.append("stage ppo only trains (do_train: true); evaluate PPO models with stage sft.")
        if v["shift_attn"]:
            problems.append("shift_attn (S^2-Attn) cannot be used with stage ppo.")
        if v["reward_model_type"] == "lora" and v["use_kt"]:
            problems.append("use_kt does not support a LoRA reward model (reward_model_type lora).")
        if v["reward_model_type"] == "lora" and v["use_unsloth"]:
            problems.append("use_unsloth does not support a LoRA reward model (reward_model_type lora).")
        report_to = v["report_to"]
        loggers = [report_to] if isinstance(report_to, str) else list(report_to or [])
        bad = [name for name in loggers if name not in ("wandb", "tensorboard", "trackio", "none")]
        if bad:
            problems.append(f"report_to: stage ppo logs only to wandb, tensorboard or trackio, got {bad}.")
    if v["streaming"] and v["max_steps"] == -1:
        problems.append("streaming needs max_steps (the length of a streamed dataset is unknown).")
    if v["do_train"] and v["dataset"] is None and v["tokenized_path"] is None:
        problems.append("do_train is true but dataset is not set; name the training dataset(s).")
    evaluates = v["do_eval"] or v["do_predict"] or v["predict_with_generate"] or v["eval_strategy"] not in (
        None, "no")
    if evaluates and v["eval_dataset"] is None and v["val_size"] < 1e-6 and v["tokenized_path"] is None:
        problems.append("evaluation is requested (do_eval / do_predict / eval_strategy) but there is no eval "
                        "data; set eval_dataset or val_size.")
    if v["predict_with_generate"]:
        if zero3:
            problems.append("predict_with_generate does not work with DeepSpeed ZeRO-3.")
        if v["compute_accuracy"]:
            problems.append("predict_with_generate and compute_accuracy cannot be used together.")
    if v["do_train"] and v["quantization_device_map"] == "auto":
        problems.append("quantization_device_map 'auto' is for inference only; remove it for training.")
    if v["pissa_init"] and zero3:
        problems.append("pissa_init does not work with DeepSpeed ZeRO-3; initialise PiSSA beforehand.")
    if v["pure_bf16"] and zero3:
        problems.append("pure_bf16 does not work with DeepSpeed ZeRO-3.")
    if v.get("deepspeed") is not None and (v["use_galore"] or v["use_apollo"]):
        problems.append("use_galore / use_apollo do not work with DeepSpeed.")
    if v["fp8"] and v["quantization_bit"] is not None:
        problems.append("fp8 training cannot be combined with quantization_bit; remove one of them.")
    if v["infer_backend"] != "huggingface":
        problems.append(f"infer_backend {v['infer_backend']!r} is for chat, api and webui; training "
                        "uses huggingface.")
    for key in ("use_unsloth", "use_kt"):
        if v[key] and zero3:
            problems.append(f"{key} does not work with DeepSpeed ZeRO-3.")
    return problems
