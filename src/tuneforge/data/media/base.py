"""What every media plugin shares: the media of one row, the typed media settings, and the plugin interface.

A media plugin is one model family's answer to three questions (LLaMA-Factory calls these mm plugins):
- `expand_messages`: which tokens stand for each image / video / audio in the text (placeholder expansion);
- `expand_token_ids`: any change to the encoded ids and labels (a few families prepend image tokens there);
- `batch_inputs`: which tensors the model gets for a padded batch (pixel_values, grid sizes, audio features).

Each family lives in its own module (data/media/<family>.py) and is found through data/media/registry.py.
A plugin is built once per run by `create(facts, model_args, tokenizer)`, from the template's media facts
(token strings) and the model directory's processor; `MediaSetupError` says why it cannot be built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import DataError

if TYPE_CHECKING:
    import torch

    from ...config.groups import ModelArgs

MEDIA_KINDS = ("images", "videos", "audios")


class MediaSetupError(Exception):
    """The run's media plugin cannot be built; the text says why and what to do."""


@dataclass(frozen=True)
class RowMedia:
    """The media of one row (or one chat request), in placeholder order. Items are paths, bytes, PIL images
    (images), frame lists / folders (videos) or arrays (audios), as the dataset or request gave them."""

    images: list = field(default_factory=list)
    videos: list = field(default_factory=list)
    audios: list = field(default_factory=list)

    @classmethod
    def of(cls, images: list | None = None, videos: list | None = None, audios: list | None = None) -> RowMedia:
        return cls(list(images or []), list(videos or []), list(audios or []))

    def __bool__(self) -> bool:
        return bool(self.images or self.videos or self.audios)

    def items(self, kind: str) -> list:
        return getattr(self, kind)


@dataclass(frozen=True)
class MediaSettings:
    """The media keys of the model group (LLaMA-Factory's names), read once per run."""

    image_max_pixels: int = 768 * 768
    image_min_pixels: int = 32 * 32
    image_do_pan_and_scan: bool = False
    crop_to_patches: bool = False
    video_max_pixels: int = 256 * 256
    video_min_pixels: int = 16 * 16
    video_fps: float = 2.0
    video_maxlen: int = 128
    audio_sampling_rate: int = 16000
    use_audio_in_video: bool = False

    @classmethod
    def from_model_args(cls, model: ModelArgs) -> MediaSettings:
        return cls(
            image_max_pixels=model.image_max_pixels, image_min_pixels=model.image_min_pixels,
            image_do_pan_and_scan=model.image_do_pan_and_scan, crop_to_patches=model.crop_to_patches,
            video_max_pixels=model.video_max_pixels, video_min_pixels=model.video_min_pixels,
            video_fps=model.video_fps, video_maxlen=model.video_maxlen,
            audio_sampling_rate=model.audio_sampling_rate, use_audio_in_video=model.use_audio_in_video)


class MediaPlugin:
    """Base class of the family plugins. Subclasses set `kinds` and implement `create`, `expand_messages` and
    `batch_inputs`; `cache_key` must change whenever the token counts could (it keys the preprocessing cache)."""

    kinds: ClassVar[tuple[str, ...]] = ("images",)  # the media this family takes
    placeholders: dict[str, str]  # kind -> the dataset's placeholder text ("<image>", "<video>", "<audio>")

    @classmethod
    def create(cls, facts: dict[str, Any], model: ModelArgs, tokenizer: Any) -> MediaPlugin:
        raise NotImplementedError

    def cache_key(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:  # the preprocessing cache hashes the template, and with it this text
        return self.cache_key()

    def expand_messages(self, messages: list[dict], media: RowMedia) -> list[dict]:
        raise NotImplementedError

    def expand_token_ids(self, input_ids: list[int], labels: list[int] | None,
                         media: RowMedia) -> tuple[list[int], list[int] | None]:
        """Ids and labels after the family's id-level change (none for most families)."""
        return input_ids, labels

    def batch_inputs(self, rows: list[RowMedia], input_ids: torch.Tensor) -> dict[str, Any]:
        raise NotImplementedError

    # Shared checks ----------------------------------------------------------------------------------------

    def check_kinds(self, media: RowMedia, family: str) -> None:
        """A DataError for media this family cannot take (e.g. audio for an image-only model)."""
        for kind in MEDIA_KINDS:
            if media.items(kind) and kind not in self.kinds:
                takes = ", ".join(self.kinds)
                raise DataError(f"{kind}: the {family} models take only {takes}; remove the {kind} column from "
                                "the dataset_info.json entry or use a model family that takes them")

    def check_placeholder_counts(self, messages: list[dict], media: RowMedia) -> None:
        """A DataError when a row's placeholder count differs from its media count, for any kind."""
        for kind in self.kinds:
            placeholder = self.placeholders[kind]
            count = sum(message["content"].count(placeholder) for message in messages)
            have = len(media.items(kind))
            if count != have:
                raise DataError(f"{kind}: a row has {have} {kind[:-1]}(s) but {count} {placeholder} "
                                f"placeholder(s) in its messages: put one {placeholder} in the text where each "
                                f"{kind[:-1]} goes")


def replace_placeholders(messages: list[dict], placeholder: str, replacements: list[str]) -> list[dict]:
    """Copies of the messages with the i-th `placeholder` (counted across all messages) replaced by
    replacements[i]. The caller has checked the counts."""
    expanded, index = [], 0
    for message in messages:
        pieces = message["content"].split(placeholder)
        content = pieces[0]
        for piece in pieces[1:]:
            content += replacements[index] + piece
            index += 1
        expanded.append({**message, "content": content})
    return expanded
