"""The InternVL media plugin (InternVL 3 / 3.5 "-hf" checkpoints, InternS1): images -> tiles -> context tokens.

InternVL's image processor (GotOcr2's) resizes each image to one square tile, or, with `crop_to_patches`, cuts it
into up to 12 tiles on the grid closest to its aspect ratio plus a thumbnail tile. Every tile becomes
`image_seq_length` <IMG_CONTEXT> tokens (processor_config.json; (448 / 14)**2 * 0.5**2 = 256 for the real
models). LLaMA-Factory 0.9.5 facts, kept exactly:
- each `<image>` becomes `<img>` + <IMG_CONTEXT> x (image_seq_length x tiles) + `</img>`; these three token
  strings are InternVL's own (LLaMA-Factory writes them literally), the template only names the placeholder;
- images are first brought within image_max_pixels / image_min_pixels (images.py);
- `crop_to_patches: true` calls the image processor with crop_to_patches=True, max_patches=12, min_patches=1;
  `false` leaves the processor's own setting (preprocessor_config.json) in force;
- the model gets `pixel_values` (all tiles of all images, in row order); the image tokens sit in the prompt, so
  the template's label masking already keeps them out of the loss.
The tile count is computed from the image header (`get_number_of_image_patches`), without decoding pixels.

Only the image processor is loaded (AutoImageProcessor), never the whole InternVLProcessor: transformers'
AutoProcessor for InternVL also builds the video processor, which needs torchvision. AutoImageProcessor picks
the torchvision-backed GotOcr2ImageProcessor where torchvision is installed (the standard path on CUDA machines)
and the PIL one (GotOcr2ImageProcessorPil) where it is not; image_seq_length is read from the same
processor_config.json the full processor would read.

Videos, as LLaMA-Factory 0.9.5 takes them: the shared decoder (data/media/video.py) keeps the frames that
video_fps / video_maxlen select, each frame is brought within video_max_pixels / video_min_pixels and becomes one
tile (crop_to_patches is off for frames), and each `<video>` becomes
"Frame1: <img>" + <IMG_CONTEXT> x image_seq_length + "</img>" lines joined by "\n". pixel_values holds, per row,
the row's image tiles and then its video frames. LLaMA-Factory orders a whole batch as all images, then all videos,
which feeds a batch holding a video row before an image row the wrong pixels; tuneforge keeps row order instead,
which is the same for a batch of one row or of one kind. Within a row images must come before videos (the order
both put the pixels in), so a `<video>` before an `<image>` in one row is refused.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import DataError
from .base import MediaPlugin, MediaSetupError, RowMedia, replace_placeholders
from .images import ImageLimits, image_size, load_image, regularized_size
from .loading import load_image_processor, token_id
from .video import VideoSampling, decode_video, probe_video

if TYPE_CHECKING:
    from ...config.groups import ModelArgs

logger = logging.getLogger(__name__)

# InternVL's image tokens (the tokenizer's start_image_token / context_image_token / end_image_token).
START_IMAGE_TOKEN = "<img>"
CONTEXT_IMAGE_TOKEN = "<IMG_CONTEXT>"
END_IMAGE_TOKEN = "</img>"
# What LLaMA-Factory passes to the image processor when `crop_to_patches` is on.
CROP_TO_PATCHES_KWARGS = {"crop_to_patches": True, "max_patches": 12, "min_patches": 1}
# Video frames are never cropped into tiles (LLaMA-Factory sets this for them whatever crop_to_patches says).
FRAME_KWARGS = {"crop_to_patches": False}


def processor_image_seq_length(model: ModelArgs) -> int:
    """The InternVLProcessor's image_seq_length: processor_config.json's, else config.json's (the same number in
    the real checkpoints; a folder saved without processor_config.json keeps it there), else the processor's
    default."""
    from transformers import AutoConfig
    from transformers.models.internvl.processing_internvl import InternVLProcessor

    hub = dict(cache_dir=model.cache_dir, revision=model.model_revision, token=model.hf_hub_token)
    try:
        config, _ = InternVLProcessor.get_processor_dict(str(model.model_name_or_path), **hub)
    except (OSError, ValueError) as error:
        logger.debug("no processor_config.json for %s: %s", model.model_name_or_path, error)
        config = {}
    if "image_seq_length" in config:
        return int(config["image_seq_length"])
    try:
        model_config = AutoConfig.from_pretrained(str(model.model_name_or_path), **hub)
    except (OSError, ValueError) as error:
        logger.debug("no config.json for %s: %s", model.model_name_or_path, error)
        model_config = None
    if getattr(model_config, "image_seq_length", None) is not None:
        return int(model_config.image_seq_length)
    return int(inspect.signature(InternVLProcessor.__init__).parameters["image_seq_length"].default)


# Media keys of other families: a value of true would change nothing here, so it is refused, not ignored.
OTHER_FAMILY_KEYS = ("image_do_pan_and_scan", "use_audio_in_video")


def refuse_unsupported_keys(model: ModelArgs) -> None:
    for key in OTHER_FAMILY_KEYS:
        if getattr(model, key):
            raise MediaSetupError(f"{key}: the InternVL models do not use it (Gemma 3 / Qwen2.5-Omni keys); "
                                  f"remove `{key}: true` from the config")


@dataclass(repr=False)
class InternVLPlugin(MediaPlugin):
    kinds: ClassVar[tuple[str, ...]] = ("images", "videos")

    image_processor: Any
    image_seq_length: int
    image_token_id: int  # the tokenizer's id of <IMG_CONTEXT>
    crop_to_patches: bool = False
    limits: ImageLimits = ImageLimits()
    video_limits: ImageLimits = ImageLimits(max_pixels=256 * 256, min_pixels=16 * 16)
    sampling: VideoSampling = VideoSampling()
    placeholder: str = "<image>"
    video_placeholder: str = "<video>"
    placeholders: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.placeholders = {"images": self.placeholder, "videos": self.video_placeholder}

    @classmethod
    def create(cls, facts: dict[str, Any], model: ModelArgs, tokenizer: Any) -> InternVLPlugin:
        from ..checks import PLACEHOLDERS

        refuse_unsupported_keys(model)
        image_processor = load_image_processor(model)
        if not hasattr(image_processor, "get_number_of_image_patches"):
            raise MediaSetupError(
                f"model_name_or_path: {model.model_name_or_path!r} has a {type(image_processor).__name__}, not "
                "InternVL's GotOcr2 image processor; use an InternVL '-hf' checkpoint (e.g. InternVL3-1B-hf)")
        return cls(image_processor=image_processor, image_seq_length=processor_image_seq_length(model),
                   image_token_id=token_id(tokenizer, CONTEXT_IMAGE_TOKEN), crop_to_patches=model.crop_to_patches,
                   limits=ImageLimits(max_pixels=model.image_max_pixels, min_pixels=model.image_min_pixels),
                   video_limits=ImageLimits(max_pixels=model.video_max_pixels, min_pixels=model.video_min_pixels),
                   sampling=VideoSampling(fps=model.video_fps, maxlen=model.video_maxlen),
                   placeholder=PLACEHOLDERS["images"], video_placeholder=PLACEHOLDERS["videos"])

    def cache_key(self) -> str:  # everything that changes token counts
        processor = self.image_processor
        return (f"InternVLPlugin(seq={self.image_seq_length}, crop={self.crop_to_patches}, {self.limits!r}, "
                f"{self.video_limits!r}, {self.sampling!r}, {self.placeholder!r}, {self.video_placeholder!r}, size={dict(processor.size)!r}, own_crop={processor.crop_to_patches}, "
                f"patches={processor.min_patches}-{processor.max_patches})")

    def processor_kwargs(self) -> dict[str, Any]:
        return dict(CROP_TO_PATCHES_KWARGS) if self.crop_to_patches else {}

    def tiles(self, image: Any) -> int:
        """How many tiles the image processor makes of this image (1, or the crop grid + a thumbnail)."""
        width, height = regularized_size(*image_size(image), self.limits)
        return int(self.image_processor.get_number_of_image_patches(height, width, self.processor_kwargs()))

    def image_tokens(self, image: Any) -> str:
        return START_IMAGE_TOKEN + CONTEXT_IMAGE_TOKEN * (self.image_seq_length * self.tiles(image)) + END_IMAGE_TOKEN

    def frame_tiles(self, width: int, height: int) -> int:
        """Tiles of one video frame: 1 with the GotOcr2 processor (frames are not cropped), asked all the same."""
        width, height = regularized_size(width, height, self.video_limits)
        return int(self.image_processor.get_number_of_image_patches(height, width, dict(FRAME_KWARGS)))

    def video_tokens(self, video: Any) -> str:
        probe = probe_video(video, self.sampling)
        context = CONTEXT_IMAGE_TOKEN * (self.image_seq_length * self.frame_tiles(probe.width, probe.height))
        return "\n".join(f"Frame{index + 1}: {START_IMAGE_TOKEN}{context}{END_IMAGE_TOKEN}"
                         for index in range(len(probe.sample_indices)))

    def check_images_before_videos(self, messages: list[dict]) -> None:
        text = "".join(str(message["content"]) for message in messages)
        last_image = text.rfind(self.placeholder)
        if last_image >= 0 and 0 <= text.find(self.video_placeholder) < last_image:
            raise DataError(f"a row puts a {self.video_placeholder} before an {self.placeholder}: InternVL rows "
                            "(as in LLaMA-Factory) take the pixels of all images first, then of all videos; put the "
                            "row's images before its videos, or split the row")

    def expand_messages(self, messages: list[dict], media: RowMedia) -> list[dict]:
        """Copies of the messages with every image / video placeholder expanded into its tile tokens."""
        self.check_kinds(media, "InternVL")
        self.check_placeholder_counts(messages, media)
        if media.images and media.videos:
            self.check_images_before_videos(messages)
        messages = replace_placeholders(messages, self.placeholder,
                                        [self.image_tokens(image) for image in media.images])
        return replace_placeholders(messages, self.video_placeholder,
                                    [self.video_tokens(video) for video in media.videos])

    def row_pixels(self, row: RowMedia) -> tuple[list[Any], int]:
        """The row's pixel tiles (images, then video frames) and how many tiles they are."""
        parts, tiles = [], 0
        if row.images:
            images = [load_image(image, self.limits) for image in row.images]
            outputs = self.image_processor(images=images, return_tensors="pt", **self.processor_kwargs())
            parts.append(outputs["pixel_values"])
            tiles += int(outputs["num_patches"].sum())
        frames = [load_image(frame, self.video_limits)
                  for video in row.videos for frame in decode_video(video, self.sampling).frames]
        if frames:
            outputs = self.image_processor(images=frames, return_tensors="pt", **FRAME_KWARGS)
            parts.append(outputs["pixel_values"])
            tiles += int(outputs["num_patches"].sum())
        return parts, tiles

    def batch_inputs(self, rows: list[RowMedia], input_ids: Any) -> dict[str, Any]:
        """pixel_values (per row: image tiles, then video frames) for a padded batch ({} without media)."""
        import torch

        parts, tiles = [], 0
        for row in rows:
            row_parts, row_tiles = self.row_pixels(row)
            parts += row_parts
            tiles += row_tiles
        if not parts:
            return {}
        needed = tiles * self.image_seq_length
        found = int((input_ids == self.image_token_id).sum())
        if found != needed:  # the model would fail with an opaque shape error
            raise DataError(f"a batch holds {found} {CONTEXT_IMAGE_TOKEN} tokens but its images need {needed}: "
                            "cutoff_len cut through an image's tokens. Raise cutoff_len, or lower "
                            "image_max_pixels / turn off crop_to_patches (videos: video_max_pixels / video_maxlen) "
                            "so each image takes fewer tokens")
        return {"pixel_values": torch.cat(parts, dim=0)}
