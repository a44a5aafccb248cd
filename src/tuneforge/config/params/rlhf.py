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
