"""Images in training data: how a template's placeholders become vision tokens and files become tensors.

A template that supports media records its plugin facts in `template.media` (plugin name and token
strings). For a run, `attach_media_plugin(template, cfg, tokenizer)` builds the plugin from those facts plus
the model's image processor (preprocessor_config.json in the model directory) and stores it as
`template.media_plugin`; the sft processor expands placeholders with it and the collator builds the
pixel inputs with it. Rows without media never touch it.

Plugins implemented: qwen2_vl (the Qwen2-VL / Qwen2.5-VL family of templates). Videos and audios are not
supported yet and are refused with a clear error.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ...errors import DataError
from .images import ImageLimits
from .qwen2_vl import Qwen2VLPlugin

if TYPE_CHECKING:
    from ...config import Config
    from ...config.groups import ModelArgs

logger = logging.getLogger(__name__)

PLUGINS = {"qwen2_vl": Qwen2VLPlugin}

__all__ = ["PLUGINS", "Qwen2VLPlugin", "ImageLimits", "attach_media_plugin", "expand_media", "media_plugin_of"]


def attach_media_plugin(template: Any, cfg: Config, tokenizer: Any) -> None:
    """Give `template` its media plugin for this run when it has one and the model ships an image processor.

    Without them, `template.media_plugin` is None and a row with images gets an error that says why.
    """
    facts = getattr(template, "media", None) or {}
    template.media_plugin = None
    template.media_problem = None
    name = facts.get("plugin")
    if name is None:
        template.media_problem = (f"the {getattr(template, 'name', None)!r} template has no image support; "
                                  "set `template` to the vision-language model's template (e.g. qwen2_vl)")
        return
    if name not in PLUGINS:
        template.media_problem = (f"images with the {getattr(template, 'name', None)!r} template (media plugin "
                                  f"{name!r}) are not supported yet; supported plugins: {', '.join(PLUGINS)}")
        return
    model = cfg.model
    image_processor, problem = _load_image_processor(model)
    if image_processor is None:
        template.media_problem = problem
        return
    from ..checks import PLACEHOLDERS

    image_token = facts.get("image_token", "<|image_pad|>")
    image_token_id = tokenizer.convert_tokens_to_ids(image_token)
    if image_token_id is None or image_token_id == tokenizer.unk_token_id:
        template.media_problem = f"the tokenizer has no {image_token} token; use the vision-language model's tokenizer"
        return
    limits = ImageLimits(max_pixels=model.image_max_pixels, min_pixels=model.image_min_pixels, qwen_vl_sides=True)
    template.media_plugin = PLUGINS[name](
        image_processor=image_processor, image_token=image_token, image_token_id=image_token_id,
        vision_bos_token=facts.get("vision_bos_token", "<|vision_start|>"),
        vision_eos_token=facts.get("vision_eos_token", "<|vision_end|>"), limits=limits,
        placeholder=PLACEHOLDERS["images"])


def _load_image_processor(model: ModelArgs) -> tuple[Any, str | None]:
    from transformers import AutoImageProcessor

    path = model.model_name_or_path
    try:
        return AutoImageProcessor.from_pretrained(
            path, trust_remote_code=model.trust_remote_code, cache_dir=model.cache_dir,
            revision=model.model_revision, token=model.hf_hub_token), None
    except (OSError, ValueError, TypeError) as error:
        logger.debug("no image processor for %s: %s", path, error)
        return None, (f"model_name_or_path: {path!r} has no image processor (preprocessor_config.json), so its "
                      "images cannot be fed to it; use the vision-language model's own directory")


def media_plugin_of(template: Any) -> Any:
    return getattr(template, "media_plugin", None)


def expand_media(template: Any, messages: list[dict], images: list | None, videos: list | None = None,
                 audios: list | None = None) -> list[dict]:
    """The messages with media placeholders expanded for the model (unchanged for a text-only row)."""
    if videos or audios:
        kind = "videos" if videos else "audios"
        raise DataError(f"{kind}: training on {kind} is not supported yet; remove the {kind} column from the "
                        "dataset_info.json entry (images are supported with the qwen2_vl template)")
    if not images or not hasattr(template, "media_plugin"):
        # No run set this template up (attach_media_plugin): the rows keep their placeholders and the
        # collator refuses their media, as for any text-only run.
        return messages
    plugin = media_plugin_of(template)
    if plugin is None:
        problem = getattr(template, "media_problem", None) or "this run has no media plugin"
        raise DataError(f"images: a row has images but {problem}")
    return plugin.expand_messages(messages, images)
