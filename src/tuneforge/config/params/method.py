"""Training method: stage, fine-tuning type and the switches of LLaMA-Factory's FinetuningArguments that
belong to no narrower group (loss variants, extra optimizers, multimodal freezing, loss plots...).

`stage` is implemented now because the data pipeline tokenizes differently per stage.
"""

from typing import Any

from ..schema import declare

G = "method"
LATER: dict[str, Any] = {"implemented": False}

declare("stage", "str", "sft", "Training stage: pre-training, supervised fine-tuning, reward modelling, "
        "PPO, DPO, KTO or GRPO (online RL with verifiable rewards).", G,
        choices=("pt", "sft", "rm", "ppo", "dpo", "kto", "grpo"))
declare("finetuning_type", "str", "lora", "Which weights are trained: LoRA adapters, OFT adapters, a frozen "
        "model's last layers, or everything.", G, choices=("lora", "oft", "freeze", "full"))
declare("pure_bf16", "bool", False, "Train purely in bfloat16, without mixed-precision float32 master "
        "weights.", G)
declare("use_llama_pro", "bool", False, "LLaMA Pro: train only the blocks `tuneforge expand` inserted "
        "(freeze_trainable_layers = their number).", G)
declare("use_adam_mini", "bool", False, "Use the Adam-mini optimizer (one second-moment value per block of "
        "weights; needs the adam-mini package).", G)
declare("use_muon", "bool", False, "Use the Muon optimizer for the 2-D weight matrices of the hidden layers "
        "(AdamW for embeddings, output layer, norms and biases).", G)
declare("use_mca", "bool", False, "Train with Megatron Core Adapter (normally set through the USE_MCA "
        "environment variable).", G, **LATER)
declare("use_hyper_parallel", "bool", False, "Use the HyperParallel FSDP/TP backend (full SFT only).", G, **LATER)
declare("hyper_parallel_args", "str", None, "JSON file with HyperParallel strategy settings.", G, **LATER)
declare("use_dft_loss", "bool", False, "Use the DFT loss for SFT: each target token's cross entropy weighted "
        "by its (detached) probability.", G)
declare("use_asft_loss", "bool", False, "Use the ASFT loss for SFT: the DFT loss plus asft_alpha x the KL "
        "divergence from the reference model (ref_model, else the starting model).", G)
declare("asft_alpha", "float", 0.1, "Weight of the KL term in the ASFT loss.", G)
declare("use_eaft_loss", "bool", False, "Use the EAFT loss for SFT: each target token's cross entropy "
        "weighted by (top-20 entropy / 3) ** eaft_alpha.", G)
declare("eaft_alpha", "float", 1.0, "Power of the adaptive weight in the EAFT loss.", G)
declare("freeze_vision_tower", "bool", True, "Multimodal models: keep the vision tower frozen.", G)
declare("freeze_multi_modal_projector", "bool", True, "Multimodal models: keep the projector frozen.", G)
declare("freeze_language_model", "bool", False, "Multimodal models: freeze the language model.", G)
declare("compute_accuracy", "bool", False, "Report token-level accuracy when evaluating (stage sft): the "
        "share of trained tokens whose greedy next-token prediction is right, averaged over rows.", G)
declare("disable_shuffling", "bool", False, "Keep the training set in its original order "
        "(train_sampling_strategy: sequential).", G)
declare("early_stopping_steps", "int", None, "Stop when `metric_for_best_model` has not improved for this "
        "many evaluations (needs eval_strategy and metric_for_best_model).", G)
declare("plot_loss", "bool", False, "Save loss curves (training_loss.png) in the output directory.", G)
declare("include_effective_tokens_per_second", "bool", False, "Report trained (non-padding) tokens per "
        "second (train metric effective_tokens_per_sec: row tokens x epochs / runtime, per process).", G)
