"""Model parameters: which weights and tokenizer to load, and how (LLaMA-Factory's ModelArguments).

Tokenizer-related keys are implemented now (the data pipeline needs the tokenizer); everything about
loading and patching the model itself arrives with the training issue.
"""

from typing import Any

from ..schema import declare

G = "model"
LATER: dict[str, Any] = {"implemented": False}

# --- what to load --------------------------------------------------------------------------------
declare("model_name_or_path", "str", None, "Local model directory or hub model id (Hugging Face or ModelScope).", G)
declare("gguf_file", "str", None, "GGUF file (llama.cpp / Ollama) inside the `model_name_or_path` folder to load "
        "the model and tokenizer from; `model_name_or_path: path/to/model.gguf` does the same. The weights are "
        "dequantized once and cached.", G)
declare("adapter_name_or_path", "list", None, "Adapter directory or hub id to load on top of the model; "
        "comma-separated to stack several.", G)
declare("adapter_folder", "str", None, "Folder holding the adapter weights to load.", G, **LATER)
declare("cache_dir", "str", None, "Where downloaded models (and preprocessed data) are cached.", G)
declare("model_revision", "str", "main", "Model version to load from the hub: branch, tag or commit id.", G)
declare("trust_remote_code", "bool", False, "Allow running modelling/tokenizer code shipped with the model "
        "or dataset repository.", G)
declare("hf_hub_token", "str", None, "Access token for the Hugging Face Hub.", G)
declare("ms_hub_token", "str", None, "Access token for the ModelScope Hub.", G)
declare("om_hub_token", "str", None, "Access token for the Modelers Hub.", G, **LATER)

# --- tokenizer -----------------------------------------------------------------------------------
declare("use_fast_tokenizer", "bool", True, "Use the fast (Rust `tokenizers`) tokenizer.", G)
declare("split_special_tokens", "bool", False, "Tokenize special-token strings as plain text instead of "
        "mapping them to their ids.", G)
declare("resize_vocab", "bool", False, "Resize the tokenizer vocabulary and the embedding layers.", G)
declare("add_tokens", "list", None, "Plain (non-special) tokens to add to the tokenizer; comma-separated.",
        G)
declare("add_special_tokens", "list", None, "Special tokens to add to the tokenizer; comma-separated.", G)
declare("new_special_tokens_config", "str", None, "YAML file mapping new special tokens to descriptions used "
        "to initialise their embeddings; takes precedence over `add_special_tokens`.", G, **LATER)
declare("init_special_tokens", "str", "noise_init", "How embeddings of new special tokens are initialised. "
        "The desc_* methods need `new_special_tokens_config`.", G,
        choices=("noise_init", "desc_init", "desc_init_w_noise"), **LATER)

# --- loading and patching ------------------------------------------------------------------------
declare("low_cpu_mem_usage", "bool", True, "Load weights without a full extra copy in memory. transformers 5 "
        "always does; false has no effect and is warned about.", G)
declare("rope_scaling", "str", None, "RoPE scaling method used to extend the context length; the factor is "
        "ceil(cutoff_len / max_position_embeddings) for training, 2 for inference.", G,
        choices=("linear", "dynamic", "yarn", "llama3"))
declare("flash_attn", "str", "auto", "Attention implementation: auto, disabled (eager), sdpa, fa2 or fa3 "
        "(FlashAttention 2/3).", G, choices=("auto", "disabled", "sdpa", "fa2", "fa3"))
declare("shift_attn", "bool", False, "Shift short attention (S^2-Attn, from LongLoRA) while training llama "
        "models; inference uses full attention.", G)
declare("mixture_of_depths", "str", None, "Mixture-of-depths: `convert` adds a token router to every second "
        "decoder layer (12.5% of tokens go through it), `load` loads a model converted so.", G,
        choices=("convert", "load"))
declare("use_unsloth", "bool", False, "Use unsloth's optimised LoRA training (needs the unsloth package "
        "and a GPU it supports).", G)
declare("use_unsloth_gc", "bool", False, "Use unsloth's gradient checkpointing (unsloth itself not needed).",
        G, **LATER)
declare("enable_liger_kernel", "bool", False, "Use the Liger fused kernels for training (CUDA only; needs "
        "liger-kernel).", G)
declare("moe_aux_loss_coef", "float", None, "Weight of the router auxiliary loss for mixture-of-experts "
        "models.", G, **LATER)
declare("disable_gradient_checkpointing", "bool", False, "Turn off gradient checkpointing (on by default).",
        G)
declare("use_reentrant_gc", "bool", True, "Use reentrant gradient checkpointing. Only when set in the config: "
        "unset, tuneforge uses non-reentrant checkpointing (same gradients, much faster with LoRA).", G)
declare("upcast_layernorm", "bool", False, "Keep layer-norm weights in float32.", G)
declare("upcast_lmhead_output", "bool", False, "Compute the lm_head output in float32.", G)
declare("train_from_scratch", "bool", False, "Start from randomly initialised weights (config only).", G)
declare("offload_folder", "str", "offload", "Folder for weights offloaded to disk.", G, **LATER)
declare("use_kv_cache", "bool", True, "Use the key/value cache during generation.", G, **LATER)
declare("use_v1_kernels", "bool", False, "Use LLaMA-Factory's v1 kernels (Ascend NPU fused RMSNorm/RoPE/SwiGLU) "
        "in training. Refused without an NPU; tuneforge does not build them.", G, nullable=True)
declare("print_param_status", "bool", False, "Debugging: print dtype, device and trainable flag of every "
        "parameter.", G)

# --- multimodal processor ------------------------------------------------------------------------
declare("image_max_pixels", "int", 768 * 768, "Images larger than this many pixels are downscaled.", G)
declare("image_min_pixels", "int", 32 * 32, "Images smaller than this many pixels are upscaled.", G)
declare("image_do_pan_and_scan", "bool", False, "Pan-and-scan image cropping (gemma3).", G)
declare("crop_to_patches", "bool", False, "Crop images into patches (internvl).", G)
declare("video_max_pixels", "int", 256 * 256, "Video frames larger than this many pixels are downscaled.",
        G)
declare("video_min_pixels", "int", 16 * 16, "Video frames smaller than this many pixels are upscaled.", G)
declare("video_fps", "float", 2.0, "Frames sampled per second of video.", G)
declare("video_maxlen", "int", 128, "Most frames sampled from one video.", G)
declare("use_audio_in_video", "bool", False, "Also feed the audio track of videos.", G)
declare("audio_sampling_rate", "int", 16000, "Sampling rate audio inputs are resampled to.", G)
