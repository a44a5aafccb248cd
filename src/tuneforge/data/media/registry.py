"""Which module implements each media plugin named in a template's `media` facts (LLaMA-Factory's names).

Modules are imported only when a run uses them, so a text-only run never imports a processor. A name whose
module does not exist yet is reported as unsupported, with the list of those that are.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import MediaPlugin

# plugin name -> "module in tuneforge.data.media:class"
PLUGIN_MODULES: dict[str, str] = {
    "qwen2_vl": "qwen2_vl:Qwen2VLPlugin",
    "qwen3_vl": "qwen3_vl:Qwen3VLPlugin",
    "gemma3": "gemma3:Gemma3Plugin",
    "gemma3n": "gemma3n:Gemma3nPlugin",
    "intern_vl": "intern_vl:InternVLPlugin",
    "llava": "llava:LlavaPlugin",
    "llava_next": "llava_next:LlavaNextPlugin",
    "llava_next_video": "llava_next_video:LlavaNextVideoPlugin",
    "video_llava": "video_llava:VideoLlavaPlugin",
    "mllama": "mllama:MllamaPlugin",
    "paligemma": "paligemma:PaliGemmaPlugin",
    "pixtral": "pixtral:PixtralPlugin",
    "llama4": "llama4:Llama4Plugin",
    "qwen2_audio": "qwen2_audio:Qwen2AudioPlugin",
    "qwen2_omni": "qwen2_omni:Qwen2OmniPlugin",
}


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"{__package__}.{PLUGIN_MODULES[name].split(':')[0]}") is not None


def supported_plugins() -> list[str]:
    """The plugin names this installation implements."""
    return [name for name in PLUGIN_MODULES if _module_exists(name)]


def plugin_class(name: str) -> type[MediaPlugin] | None:
    """The plugin class for `name`, or None when tuneforge does not implement that family yet."""
    if name not in PLUGIN_MODULES or not _module_exists(name):
        return None
    module_name, class_name = PLUGIN_MODULES[name].split(":")
    module = importlib.import_module(f"{__package__}.{module_name}")
    return getattr(module, class_name)
