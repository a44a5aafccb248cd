"""Images, videos and audios in training data: how a template's placeholders become the model's media tokens
and how files become tensors.

A template that supports media records its plugin facts in `template.media` (plugin name and token strings).
For a run, `attach_media_plugin(template, cfg, tokenizer)` builds the family's plugin (data/media/<family>.py,
found through registry.py) from those facts and the model directory's processor, and stores it as
`template.media_plugin`; the processors expand placeholders with it (`expand_media`) and the collator builds
the model's media inputs with it. Rows without media never touch it. The interface is in base.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import DataError
from .base import MEDIA_KINDS, MediaPlugin, MediaSettings, MediaSetupError, RowMedia
from .images import ImageLimits
from .registry import plugin_class, supported_plugins

if TYPE_CHECKING:
    from ...config import Config

__all__ = ["MEDIA_KINDS", "ImageLimits", "MediaPlugin", "MediaSettings", "MediaSetupError", "RowMedia",
           "attach_media_plugin", "expand_media", "media_plugin_of", "row_media"]


def attach_media_plugin(template: Any, cfg: Config, tokenizer: Any) -> None:
    """Give `template` its media plugin for this run when it has one and the model ships its processor.

    Without them, `template.media_plugin` is None and `template.media_problem` says why; a row with media
    then gets an error with that text.
    """
    facts = getattr(template, "media", None) or {}
    template.media_plugin = None
    template.media_problem = None
    name = facts.get("plugin")
    template_name = getattr(template, "name", None)
    if name is None:
        template.media_problem = (f"the {template_name!r} template has no media support; set `template` to the "
                                  "multimodal model's template (e.g. qwen2_vl)")
        return
    cls = plugin_class(name)
    if cls is None:
        template.media_problem = (f"media with the {template_name!r} template (media plugin {name!r}) are not "
                                  f"supported yet; supported plugins: {', '.join(supported_plugins())}")
        return
    try:
        template.media_plugin = cls.create(facts, cfg.model, tokenizer)
    except MediaSetupError as error:
        template.media_problem = str(error)


def media_plugin_of(template: Any) -> MediaPlugin | None:
    return getattr(template, "media_plugin", None)


def row_media(images: list | None = None, videos: list | None = None, audios: list | None = None) -> RowMedia:
    return RowMedia.of(images, videos, audios)


def expand_media(template: Any, messages: list[dict], images: list | None, videos: list | None = None,
                 audios: list | None = None) -> list[dict]:
    """The messages with media placeholders expanded for the model (unchanged for a text-only row)."""
    media = RowMedia.of(images, videos, audios)
    if not media or not hasattr(template, "media_plugin"):
        # No run set this template up (attach_media_plugin): the rows keep their placeholders and the
        # collator refuses their media, as for any text-only run.
        return messages
    plugin = media_plugin_of(template)
    if plugin is None:
        kind = next(kind for kind in MEDIA_KINDS if media.items(kind))
        problem = getattr(template, "media_problem", None) or "this run has no media plugin"
        raise DataError(f"{kind}: a row has {kind} but {problem}")
    return plugin.expand_messages(messages, media)
