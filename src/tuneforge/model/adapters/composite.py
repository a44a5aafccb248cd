"""Vision-language (composite) models: which parameter-name keys belong to which part.

Facts from LLaMA-Factory's composite-model table: keys are substrings of parameter names. They drive
`freeze_vision_tower`, `freeze_multi_modal_projector` and `freeze_language_model`, and keep LoRA off
the vision tower and projector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CompositeParts:
    projector: tuple[str, ...] = ("multi_modal_projector",)
    vision: tuple[str, ...] = ("vision_tower",)
    language: tuple[str, ...] = ("language_model", "lm_head")
    # Modules LoRA must never wrap (e.g. a Conv3d patch embedding peft cannot adapt).
    lora_conflicts: tuple[str, ...] = field(default_factory=tuple)


COMPOSITE_MODELS: dict[str, CompositeParts] = {
    "llava": CompositeParts(),
    "qwen2_vl": CompositeParts(projector=("visual.merger",), vision=("visual.patch_embed", "visual.blocks"),
                               lora_conflicts=("patch_embed",)),
    "qwen2_5_vl": CompositeParts(projector=("visual.merger",), vision=("visual.patch_embed", "visual.blocks"),
                                 lora_conflicts=("patch_embed",)),
}


def composite_parts(model: Any) -> CompositeParts | None:
    return COMPOSITE_MODELS.get(getattr(model.config, "model_type", None))


def forbidden_modules(model: Any, cfg: Any) -> set[str]:
    """Name keys that must stay frozen under the freeze_* switches (empty for text-only models)."""
    parts = composite_parts(model)
    if parts is None:
        return set()
    blocked: set[str] = set()
    if getattr(cfg, "freeze_vision_tower", True):
        blocked.update(parts.vision)
    if getattr(cfg, "freeze_multi_modal_projector", True):
        blocked.update(parts.projector)
    if getattr(cfg, "freeze_language_model", False):
        blocked.update(parts.language)
    return blocked
