"""Cross-key rules for the optimizer choice (optim, GaLore, APOLLO, BAdam, LoRA+), checked with the config.

LLaMA-Factory 0.9.5 finds most of these only while it builds the optimizer (NotImplementedError,
assert, ValueError mid-setup); here they are reported up front with every other config problem.
Rules that need the launched world (distributed or not) live in train/optimizers.py.
"""

from __future__ import annotations

from typing import Any

# HF `optim` names each low-rank optimizer has a version of (galore-torch / apollo-torch classes).
GALORE_OPTIMS = ("adamw_torch", "adamw_torch_fused", "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit",
                 "adafactor")
APOLLO_OPTIMS = ("adamw_torch", "adamw_torch_fused")
# BAdam's ratio mode runs its own sparse Adam on AdamW's settings.
BADAM_RATIO_OPTIMS = ("adamw_torch", "adamw_torch_fused")
# Optimizers built whole by train/optim/optimizers.py; the AdamW part of Muon reads adam_beta1/2 and adam_epsilon.
OWN_OPTIMIZERS = ("use_muon", "use_adam_mini")
OWN_OPTIMIZER_OPTIMS = ("adamw_torch", "adamw_torch_fused")


def optimizer_rules(v: dict[str, Any]) -> list[str]:
    problems = []
    optim = v.get("optim")
    if v["use_galore"] and optim not in GALORE_OPTIMS:
        problems.append(f"use_galore works with optim {', '.join(GALORE_OPTIMS)}; optim is {optim!r}.")
    if v["use_apollo"] and optim not in APOLLO_OPTIMS:
        problems.append(f"use_apollo works with optim adamw_torch (or adamw_torch_fused); optim is {optim!r}.")
    if v["use_badam"] and v["badam_mode"] == "ratio" and optim not in BADAM_RATIO_OPTIMS:
        problems.append(f"badam_mode ratio runs its own sparse AdamW: set optim adamw_torch (optim is {optim!r}) "
                        "or use badam_mode layer.")
    accumulation = v.get("gradient_accumulation_steps") or 1
    for method in ("galore", "apollo"):
        if v[f"use_{method}"] and v[f"{method}_layerwise"] and accumulation != 1:
            problems.append(f"{method}_layerwise updates each weight as soon as its gradient is ready, so it "
                            f"cannot accumulate gradients: set gradient_accumulation_steps 1 (it is "
                            f"{accumulation}) or {method}_layerwise false.")
        if v[f"use_{method}"]:
            for key in (f"{method}_rank", f"{method}_update_interval"):
                if v[key] < 1:
                    problems.append(f"{key}: {v[key]!r} must be at least 1.")
    if v["use_badam"]:
        ratio = v["badam_update_ratio"]
        if v["badam_mode"] == "ratio" and not 0 < ratio <= 1:
            problems.append(f"badam_update_ratio: {ratio!r} must be in (0, 1] (the share of each weight updated).")
        interval = v["badam_switch_interval"]
        if v["badam_mode"] == "layer" and interval is not None and interval != -1 and interval < 1:
            problems.append(f"badam_switch_interval: {interval!r} must be a number of steps >= 1, or -1 to "
                            "never switch.")
        if v["badam_mode"] == "layer" and v["badam_switch_mode"] is None:
            problems.append("badam_switch_mode must be set for badam_mode layer (ascending, descending, random "
                            "or fixed).")
        if v["badam_start_block"] is not None and v["badam_start_block"] < 0:
            problems.append(f"badam_start_block: {v['badam_start_block']!r} must be a layer index >= 0.")
    problems += _own_optimizer_rules(v)
    ratio = v["loraplus_lr_ratio"]
    if ratio is not None and ratio <= 0:
        problems.append(f"loraplus_lr_ratio: {ratio!r} must be positive (LoRA+ suggests 2 to 16).")
    return problems


def _own_optimizer_rules(v: dict[str, Any]) -> list[str]:
    """use_muon / use_adam_mini build the whole optimizer themselves: nothing else may shape it."""
    own = [key for key in OWN_OPTIMIZERS if v[key]]
    if not own:
        return []
    problems = []
    others = [key for key in ("use_galore", "use_apollo", "use_badam") if v[key]] + own[1:]
    if v["loraplus_lr_ratio"] is not None:
        others.append("loraplus_lr_ratio")
    if others:
        problems.append(f"{own[0]} cannot be combined with {', '.join(others)}: each builds its own optimizer; "
                        "choose one.")
    optim = v.get("optim")
    if optim not in OWN_OPTIMIZER_OPTIMS:
        problems.append(f"{own[0]} replaces optim (it is {optim!r}, which would be ignored): set optim "
                        "adamw_torch or remove it.")
    return problems
