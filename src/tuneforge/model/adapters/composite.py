"""Vision-language (composite) models: which parameter-name keys belong to which part.

Facts from LLaMA-Factory's composite-model table: keys are substrings of parameter names. They drive
`freeze_vision_tower`, `freeze_multi_modal_projector` and `freeze_language_model`, and keep LoRA off
the vision tower and projector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...config.groups import MethodArgs


@dataclass(frozen=True)
class CompositeParts:
    projector: tuple[str, ...] = ("multi_modal_projector",)
    vision: tuple[str, ...] = ("vision_tower",)
    language: tuple[str, ...] = ("language_model", "lm_head")
    # Modules LoRA must never wrap (e.g. a Conv3d patch embedding peft cannot adapt).
    lora_conflicts: tuple[str, ...] = field(default_factory=tuple)


COMPOSITE_MODELS: dict[str, CompositeParts] = {
    "llava": CompositeParts(),
    # LLaVA-NeXT, Mistral-3 (Pixtral vision tower), Gemma 3 and PaliGemma name their parts as LLaVA does
    # (model.vision_tower / model.multi_modal_projector / model.language_model + lm_head), LLaMA-Factory's table too.
    "llava_next": CompositeParts(),
    "mistral3": CompositeParts(),
    "gemma3": CompositeParts(),
    "paligemma": CompositeParts(),
    "qwen2_vl": CompositeParts(projector=("visual.merger",), vision=("visual.patch_embed", "visual.blocks"),
                               lora_conflicts=("patch_embed",)),
    "qwen2_5_vl": CompositeParts(projector=("visual.merger",), vision=("visual.patch_embed", "visual.blocks"),
                                 lora_conflicts=("patch_embed",)),
    # Qwen3-VL: a learned position embedding and the DeepStack mergers also belong to the vision tower.
    "qwen3_vl": CompositeParts(projector=("visual.merger",), vision=("visual.pos_embed", "visual.patch_embed",
                               "visual.blocks", "visual.deepstack_merger_list"), lora_conflicts=("patch_embed",)),
    "qwen3_vl_moe": CompositeParts(projector=("visual.merger",), vision=("visual.pos_embed", "visual.patch_embed",
                                   "visual.blocks", "visual.deepstack_merger_list"), lora_conflicts=("patch_embed",)),
    # InternVL (-hf layout): vision_tower, multi_modal_projector, language_model.
    "internvl": CompositeParts(),
    # Llama-3.2-Vision / Llama 4: the vision encoder is `vision_model`; mllama's cross-attention layers live in
    # language_model.layers, so they train (and freeze) with the language model.
    "mllama": CompositeParts(vision=("vision_model",)),
    "llama4": CompositeParts(vision=("vision_model",)),
    # Audio models: LLaMA-Factory counts the audio tower as the "vision tower" (freeze_vision_tower freezes it).
    "qwen2_audio": CompositeParts(vision=("audio_tower",)),
    "qwen2_5_omni_thinker": CompositeParts(projector=("visual.merger", "audio_tower.proj"),
                                           vision=("visual.patch_embed", "visual.blocks", "audio_tower"),
                                           language=("language_model", "lm_head"), lora_conflicts=("patch_embed",)),
}


def model_type(model: Any) -> str:
    """The model's `model_type` ("" when its config has none)."""
    return str(getattr(model.config, "model_type", None) or "")


def composite_parts(model: Any) -> CompositeParts | None:
    return COMPOSITE_MODELS.get(model_type(model))


def forbidden_modules(model: Any, method: MethodArgs) -> set[str]:
    """Name keys that must stay frozen under the freeze_* switches (empty for text-only models)."""
    parts = composite_parts(model)
    if parts is None:
        return set()
    blocked: set[str] = set()
    if method.freeze_vision_tower:
        blocked.update(parts.vision)
    if method.freeze_multi_modal_projector:
        blocked.update(parts.projector)
    if method.freeze_language_model:
        blocked.update(parts.language)
    return blocked
