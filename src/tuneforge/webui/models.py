"""Known model families for the Model name drop-down: hub id and default chat template.

Choosing a name fills the model path (the hub id, which a local directory path may replace) and the
template. Ids and template names are those LLaMA-Factory's users know.
"""

from __future__ import annotations

CUSTOM = "Custom"

# name -> (Hugging Face hub id, default template)
MODELS: dict[str, tuple[str, str]] = {
    "Qwen2.5-0.5B-Instruct": ("Qwen/Qwen2.5-0.5B-Instruct", "qwen"),
    "Qwen2.5-1.5B-Instruct": ("Qwen/Qwen2.5-1.5B-Instruct", "qwen"),
    "Qwen2.5-7B-Instruct": ("Qwen/Qwen2.5-7B-Instruct", "qwen"),
    "Qwen2-7B": ("Qwen/Qwen2-7B", "default"),
    "Qwen2-7B-Instruct": ("Qwen/Qwen2-7B-Instruct", "qwen"),
    "Qwen2-VL-2B-Instruct": ("Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl"),
    "Qwen3-0.6B": ("Qwen/Qwen3-0.6B", "qwen3"),
    "Qwen3-8B": ("Qwen/Qwen3-8B", "qwen3"),
    "Llama-3-8B-Instruct": ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3"),
    "Llama-3.1-8B-Instruct": ("meta-llama/Llama-3.1-8B-Instruct", "llama3"),
    "Llama-3.2-1B-Instruct": ("meta-llama/Llama-3.2-1B-Instruct", "llama3"),
    "Llama-2-7B-Chat": ("meta-llama/Llama-2-7b-chat-hf", "llama2"),
    "Mistral-7B-Instruct-v0.3": ("mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
    "Gemma-2-9B-Instruct": ("google/gemma-2-9b-it", "gemma"),
    "GLM-4-9B-Chat": ("THUDM/glm-4-9b-chat", "glm4"),
    "Yi-1.5-9B-Chat": ("01-ai/Yi-1.5-9B-Chat", "yi"),
    "DeepSeek-R1-Distill-Qwen-7B": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek3"),
    "Phi-3-mini-4k-instruct": ("microsoft/Phi-3-mini-4k-instruct", "phi"),
}


def model_choices() -> list[str]:
    return [CUSTOM, *MODELS]


def model_defaults(name: str) -> tuple[str | None, str | None]:
    """(hub id, template) for a known name; (None, None) for Custom or an unknown name."""
    return MODELS.get(name, (None, None))
