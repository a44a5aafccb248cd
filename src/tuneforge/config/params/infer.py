"""Inference engine parameters (chat, API, web UI): backend choice plus vLLM and SGLang settings."""

from ..schema import declare

G = "infer"

declare("infer_backend", "str", "huggingface", "Engine used for inference.", G,
        choices=("huggingface", "vllm", "sglang"))
declare("infer_dtype", "str", "auto", "Weight and activation dtype at inference.", G,
        choices=("auto", "float16", "bfloat16", "float32"))

# --- vLLM ----------------------------------------------------------------------------------------
declare("vllm_maxlen", "int", 4096, "Longest sequence (prompt + answer) the vLLM engine accepts.", G)
declare("vllm_gpu_util", "float", 0.7, "Share of GPU memory (0-1) vLLM may use.", G)
declare("vllm_enforce_eager", "bool", False, "Run vLLM without CUDA graphs.", G)
declare("vllm_max_lora_rank", "int", 32, "Largest LoRA rank vLLM must serve.", G)
declare("vllm_config", "dict", None, "Extra vLLM engine arguments (a mapping or a JSON object string).", G)

# --- SGLang --------------------------------------------------------------------------------------
declare("sglang_maxlen", "int", 4096, "Longest sequence (prompt + answer) the SGLang engine accepts.", G)
declare("sglang_mem_fraction", "float", 0.7, "Share of memory (0-1) SGLang may use.", G)
declare("sglang_tp_size", "int", -1, "Tensor-parallel size for SGLang (-1: all visible GPUs).", G)
declare("sglang_config", "dict", None, "Extra SGLang engine arguments (a mapping or a JSON object string).", G)
declare("sglang_lora_backend", "str", "triton", "Kernel backend for LoRA matmuls in SGLang.", G,
        choices=("triton", "flashinfer"))
