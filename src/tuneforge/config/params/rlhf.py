"""Preference and reinforcement learning: DPO family (incl. ORPO, SimPO), KTO, PPO, reward models."""

from typing import Any

from ..schema import declare

G = "rlhf"
LATER: dict[str, Any] = {"implemented": False}

declare("pref_beta", "float", 0.1, "Beta of the preference loss (strength of the reference-model tie).", G)
declare("pref_ftx", "float", 0.0, "Weight of an added SFT loss in DPO training.", G)
declare("pref_bco_weight", "float", 0.0, "Weight of the Binary Classifier Optimization loss in DPO.", G)
declare("pref_loss", "str", "sigmoid", "Preference loss (sigmoid = standard DPO).", G,
        choices=("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"))
declare("dpo_label_smoothing", "float", 0.0, "cDPO label smoothing in [0, 0.5]; sigmoid loss only.", G)
declare("kto_chosen_weight", "float", 1.0, "KTO: weight of desirable examples.", G)
declare("kto_rejected_weight", "float", 1.0, "KTO: weight of undesirable examples.", G)
declare("simpo_gamma", "float", 0.5, "SimPO: target reward margin.", G)
declare("ld_alpha", "float", None, "LD-DPO: weight of the verbose part of the response log-probabilities.", G)

declare("ppo_buffer_size", "int", 1, "PPO: mini-batches collected into the experience buffer per step.", G)
declare("ppo_epochs", "int", 4, "PPO: optimisation epochs per step.", G)
declare("ppo_score_norm", "bool", False, "PPO: normalise reward scores.", G)
declare("ppo_target", "float", 6.0, "PPO: target KL for the adaptive KL controller.", G)
declare("ppo_whiten_rewards", "bool", False, "PPO: whiten rewards before computing advantages.", G)

declare("ref_model", "str", None, "Reference model for DPO/PPO (default: the model being trained).", G)
declare("ref_model_adapters", "str", None, "Adapter(s) of the reference model.", G)
declare("ref_model_quantization_bit", "int", None, "Quantize the reference model to 4 or 8 bits.", G,
        choices=(4, 8))
declare("reward_model", "str", None, "Reward model for PPO.", G)
declare("reward_model_adapters", "str", None, "Adapter(s) of the reward model.", G)
declare("reward_model_quantization_bit", "int", None, "Quantize the reward model to 4 or 8 bits.", G,
        choices=(4, 8))
declare("reward_model_type", "str", "lora", "Kind of reward model for PPO (a LoRA reward model needs LoRA "
        "training).", G, choices=("lora", "full", "api"))

# GRPO family (stage grpo): TRL's / ms-swift's names and TRL 1.16's defaults, so their users recognise them.
# Sampling reads temperature / top_p / top_k / do_sample of group generate.
declare("num_generations", "int", 8, "GRPO: completions sampled per prompt (the group whose rewards are compared).",
        G)
declare("max_completion_length", "int", 256, "GRPO: most tokens generated per completion.", G)
declare("reward_funcs", "list", None, "GRPO: reward functions, comma-separated: accuracy, format, tool_call, "
        "length, reward_model (the `reward_model` key's scorer), or path/to/file.py:function.", G)
declare("reward_weights", "float_list", None, "GRPO: one weight per reward function (default: 1 each).", G)
declare("beta", "float", 0.0, "GRPO: weight of the KL to the reference model (k3 estimator); 0 loads no "
        "reference.", G)
declare("epsilon", "float", 0.2, "GRPO: lower clipping range of the importance ratio (1 - epsilon).", G)
declare("epsilon_high", "float", None, "GRPO: upper clipping range (1 + epsilon_high; DAPO's clip-higher). "
        "Unset: epsilon.", G)
declare("num_iterations", "int", 1, "GRPO: optimisation passes per rollout batch (mu); > 1 keeps the old "
        "log-probabilities of the sampling policy.", G)
declare("loss_type", "str", "dapo", "GRPO: how the token losses are averaged: grpo (per sequence, then over "
        "sequences), bnpo (over the micro-batch's tokens), dr_grpo (by sequences x max_completion_length), dapo "
        "(over the tokens of the whole step, all ranks).", G, choices=("grpo", "dr_grpo", "dapo", "bnpo"))
declare("importance_sampling_level", "str", "token", "GRPO: importance ratio per token, or per sequence "
        "(sequence = GSPO).", G, choices=("token", "sequence"))
declare("scale_rewards", "str", "group", "GRPO: divide advantages by the reward std of the group, of the whole "
        "batch, or not at all (none, as Dr. GRPO).", G, choices=("group", "batch", "none"))
declare("mask_truncated_completions", "bool", False, "GRPO: completions cut at max_completion_length add no "
        "loss.", G)
declare("dynamic_sampling", "bool", False, "GRPO: DAPO's dynamic sampling: drop groups whose rewards are all "
        "equal and sample more prompts.", G)
declare("max_resample_times", "int", 3, "GRPO: extra sampling rounds dynamic_sampling may take per step.", G)
declare("soft_max_length", "int", None, "GRPO `length` reward: DAPO's soft overlong penalty limit L_max in "
        "tokens. Unset: max_completion_length.", G)
declare("soft_cache_length", "int", None, "GRPO `length` reward: the L_cache tokens before L_max over which the "
        "penalty grows from 0 to -1 (needed for the `length` reward).", G)
declare("use_vllm", "bool", False, "GRPO: generate rollouts with vLLM (CUDA only).", G)
declare("vllm_mode", "str", "colocate", "GRPO: vLLM in this process (colocate) or a separate server.", G,
        choices=("colocate", "server"))
