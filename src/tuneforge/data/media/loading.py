"""Load a model directory's processors for a media plugin, turning every failure into a MediaSetupError."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .base import MediaSetupError

if TYPE_CHECKING:
    from ...config.groups import ModelArgs

logger = logging.getLogger(__name__)


def _hub_kwargs(model: ModelArgs) -> dict[str, Any]:
    return dict(trust_remote_code=model.trust_remote_code, cache_dir=model.cache_dir, revision=model.model_revision,
                token=model.hf_hub_token)


def load_image_processor(model: ModelArgs) -> Any:
    """The model directory's image processor (preprocessor_config.json)."""
    from transformers import AutoImageProcessor

    path = model.model_name_or_path
    try:
        return AutoImageProcessor.from_pretrained(path, **_hub_kwargs(model))
    except (OSError, ValueError, TypeError, KeyError) as error:
        logger.debug("no image processor for %s: %s", path, error)
        raise MediaSetupError(
            f"model_name_or_path: {path!r} has no image processor (preprocessor_config.json), so its images "
            "cannot be fed to it; use the vision-language model's own directory") from None


def load_processor(model: ModelArgs, what: str = "processor") -> Any:
    """The model directory's multimodal processor (AutoProcessor: image/audio processor + tokenizer)."""
    from transformers import AutoProcessor

    path = model.model_name_or_path
    try:
        return AutoProcessor.from_pretrained(path, **_hub_kwargs(model))
    except (OSError, ValueError, TypeError, KeyError, ImportError) as error:
        logger.debug("no processor for %s: %s", path, error)
        raise MediaSetupError(
            f"model_name_or_path: {path!r} has no usable {what} ({type(error).__name__}: {error}); use the "
            "multimodal model's own directory, which holds processor_config.json / preprocessor_config.json")\
            from None


def token_id(tokenizer: Any, token: str) -> int:
    """The tokenizer's id of a media token; a MediaSetupError when the tokenizer lacks it."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise MediaSetupError(f"the tokenizer has no {token} token; use the multimodal model's tokenizer")
    return int(token_id)
