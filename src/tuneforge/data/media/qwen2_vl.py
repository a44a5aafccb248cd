"""The Qwen2-VL / Qwen2.5-VL media plugin: image and video placeholders -> vision tokens, files -> pixel tensors.

Each `<image>` in a message becomes <|vision_start|> + N x <|image_pad|> + <|vision_end|> (token strings from
the template's `media` facts), where N = grid_t * grid_h * grid_w // merge_size**2 for that image: the
image processor cuts the (resized) image into patch_size-pixel patches and the model merges each
merge_size x merge_size block of patches into one token. Each `<video>` becomes <|vision_start|> +
N x <|video_pad|> + <|vision_end|> the same way, over the video's sampled frames (data/media/video.py; an odd
frame count gets its last frame repeated; frames are limited by video_max_pixels / video_min_pixels). This is
LLaMA-Factory 0.9.5's expansion for qwen2_vl; N is computed from the image size / video header alone, without
decoding pixels.

In a batch, `batch_inputs` gives the model `pixel_values` / `image_grid_thw` (all images, in row order, made by
the model's own image processor), `pixel_values_videos` / `video_grid_thw` (data/media/qwen_video.py), for
Qwen2.5-VL `second_per_grid_ts` (temporal_patch_size / sampled fps per video), and `mm_token_type_ids`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import DataError
from .base import MediaPlugin, MediaSetupError, RowMedia, replace_placeholders
from .images import ImageLimits, image_size, load_image, regularized_size
from .loading import load_image_processor, token_id
from .qwen_video import TorchVideoPatcher, VideoGeometry, load_video_processor, read_video_geometry
from .video import VideoProbe, VideoSampling, decode_video, probe_video

if TYPE_CHECKING:
    from ...config.groups import ModelArgs

IMAGE_PLACEHOLDER_DEFAULT = "<image>"
VIDEO_PLACEHOLDER_DEFAULT = "<video>"
# Model types whose forward takes second_per_grid_ts (LF adds it when the processor lists it as an input).
SECONDS_PER_GRID_MODELS = ("qwen2_5_vl", "qwen2_5_omni", "qwen2_5_omni_thinker")


def _model_type(model: ModelArgs) -> str:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(model.model_name_or_path), trust_remote_code=model.trust_remote_code,
                                            cache_dir=model.cache_dir, revision=model.model_revision,
                                            token=model.hf_hub_token)
    except (OSError, ValueError, KeyError) as error:
        raise MediaSetupError(f"model_name_or_path: {model.model_name_or_path!r} has no readable config.json "
                              f"({error}); use the vision-language model's own directory") from None
    return str(config.model_type)


@dataclass(repr=False)
class Qwen2VLPlugin(MediaPlugin):
    kinds: ClassVar[tuple[str, ...]] = ("images", "videos")
    family: ClassVar[str] = "Qwen2-VL"
    frame_aware_resize: ClassVar[bool] = False  # Qwen3-VL's video smart_resize also counts frames

    image_processor: Any
    video_geometry: VideoGeometry | None = None
    video_processor: Any = None  # HF's own, when torchvision works; else TorchVideoPatcher does its math
    image_token: str = "<|image_pad|>"
    image_token_id: int = -1  # the tokenizer's id of image_token
    video_token: str = "<|video_pad|>"
    video_token_id: int = -1
    vision_bos_token: str = "<|vision_start|>"
    vision_eos_token: str = "<|vision_end|>"
    limits: ImageLimits = ImageLimits(qwen_vl_sides=True)
    video_limits: ImageLimits = ImageLimits(max_pixels=256 * 256, min_pixels=16 * 16, qwen_vl_sides=True)
    sampling: VideoSampling = VideoSampling()
    seconds_per_grid: bool = False  # Qwen2.5-VL: feed second_per_grid_ts
    placeholder: str = IMAGE_PLACEHOLDER_DEFAULT
    video_placeholder: str = VIDEO_PLACEHOLDER_DEFAULT
    placeholders: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.placeholders = {"images": self.placeholder, "videos": self.video_placeholder}

    @classmethod
    def create(cls, facts: dict[str, Any], model: ModelArgs, tokenizer: Any) -> Qwen2VLPlugin:
        from ..checks import PLACEHOLDERS

        cls.refuse_unsupported_keys(model)
        image_processor = load_image_processor(model)
        image_token = facts.get("image_token", "<|image_pad|>")
        video_token = facts.get("video_token", "<|video_pad|>")
        return cls(image_processor=image_processor,
                   video_geometry=read_video_geometry(model, cls.frame_aware_resize),
                   video_processor=load_video_processor(model),
                   image_token=image_token, image_token_id=token_id(tokenizer, image_token),
                   video_token=video_token, video_token_id=token_id(tokenizer, video_token),
                   vision_bos_token=facts.get("vision_bos_token", "<|vision_start|>"),
                   vision_eos_token=facts.get("vision_eos_token", "<|vision_end|>"),
                   limits=ImageLimits(max_pixels=model.image_max_pixels, min_pixels=model.image_min_pixels,
                                      qwen_vl_sides=True),
                   video_limits=ImageLimits(max_pixels=model.video_max_pixels, min_pixels=model.video_min_pixels,
                                            qwen_vl_sides=True),
                   sampling=VideoSampling(fps=model.video_fps, maxlen=model.video_maxlen),
                   seconds_per_grid=_model_type(model) in SECONDS_PER_GRID_MODELS,
                   placeholder=PLACEHOLDERS["images"], video_placeholder=PLACEHOLDERS["videos"])

    @classmethod
    def refuse_unsupported_keys(cls, model: ModelArgs) -> None:
        """The media keys of other families, refused when set (they would change nothing here)."""
        for key in ("image_do_pan_and_scan", "crop_to_patches", "use_audio_in_video"):
            if getattr(model, key):
                raise MediaSetupError(f"{key}: the {cls.family} models do not use it (Gemma 3 / InternVL / "
                                      f"Qwen2.5-Omni keys); remove `{key}: true` from the config")

    def cache_key(self) -> str:  # everything that changes token counts
        processor = self.image_processor
        return (f"{type(self).__name__}({self.image_token!r}, {self.video_token!r}, {self.vision_bos_token!r}, "
                f"{self.vision_eos_token!r}, {self.limits!r}, {self.video_limits!r}, {self.sampling!r}, "
                f"{self.video_geometry!r}, {self.placeholder!r}, {self.video_placeholder!r}, "
                f"patch={processor.patch_size}, merge={processor.merge_size}, size={dict(processor.size)!r})")

    # Token counts ---------------------------------------------------------------------------------------------

    def image_seqlen(self, image: Any) -> int:
        """How many <|image_pad|> tokens stand for this image."""
        width, height = regularized_size(*image_size(image), self.limits)
        patches = self.image_processor.get_number_of_image_patches(height, width, {})  # grid_t = 1 for images
        return patches // self.image_processor.merge_size ** 2

    def video_grid(self, video: Any, probe: VideoProbe | None = None) -> tuple[int, int, int]:
        """The (t, h, w) patch grid of a video, from its header (LF's metadata path) or first frame."""
        assert self.video_geometry is not None
        probe = probe or probe_video(video, self.sampling)
        width, height = regularized_size(probe.width, probe.height, self.video_limits)
        num_frames = len(probe.sample_indices)
        num_frames += num_frames % 2  # LF repeats the last frame of an odd count
        try:
            return self.video_geometry.grid(num_frames, height, width)
        except ValueError as error:
            raise DataError(f"videos: {video!r} cannot be fed to the {self.family} models: {error}") from None

    def video_seqlen(self, video: Any) -> int:
        t, h, w = self.video_grid(video)
        return t * h * w // self.image_processor.merge_size ** 2

    def video_tokens(self, video: Any) -> str:
        return self.vision_bos_token + self.video_token * self.video_seqlen(video) + self.vision_eos_token

    def expand_messages(self, messages: list[dict], media: RowMedia) -> list[dict]:
        """Copies of the messages with every image and video placeholder expanded into its vision tokens."""
        self.check_kinds(media, self.family)
        self.check_placeholder_counts(messages, media)
        images = [self.vision_bos_token + self.image_token * self.image_seqlen(image) + self.vision_eos_token
                  for image in media.images]
        messages = replace_placeholders(messages, self.placeholder, images)
        return replace_placeholders(messages, self.video_placeholder,
                                    [self.video_tokens(video) for video in media.videos])

    # Batch tensors --------------------------------------------------------------------------------------------

    def load_video_frames(self, video: Any) -> tuple[list, Any]:
        """The video's frames as the model's processor gets them (even count, resized like LF), and its timing."""
        decoded = decode_video(video, self.sampling)
        frames = list(decoded.frames)
        if len(frames) % 2:
            frames.append(frames[-1])
        return [load_image(frame, self.video_limits) for frame in frames], decoded

    def video_processor_inputs(self, videos: list[list], decoded: list) -> dict[str, Any]:
        if self.video_processor is not None:  # the standard path (torchvision works)
            return dict(self.video_processor(videos=videos, return_tensors="pt"))
        assert self.video_geometry is not None
        return TorchVideoPatcher(self.video_geometry)(videos)

    def _video_inputs(self, rows: list[RowMedia]) -> dict[str, Any]:
        import torch

        loaded = [self.load_video_frames(video) for row in rows for video in row.videos]
        if not loaded:
            return {}
        frames, decoded = [pair[0] for pair in loaded], [pair[1] for pair in loaded]
        inputs = self.video_processor_inputs(frames, decoded)
        if self.seconds_per_grid:
            assert self.video_geometry is not None
            inputs["second_per_grid_ts"] = torch.tensor(
                [self.video_geometry.temporal_patch_size / video.sampled_fps for video in decoded])
        return inputs

    def batch_inputs(self, rows: list[RowMedia], input_ids: Any) -> dict[str, Any]:
        """The pixel inputs of a padded batch ({} when no row has media), with mm_token_type_ids (1 on image
        tokens, 2 on video tokens), which tells transformers 5 where to lay out each image's 3D M-RoPE
        positions."""
        images = [load_image(image, self.limits) for row in rows for image in row.images]
        inputs: dict[str, Any] = {}
        if images:
            inputs.update(self.image_processor(images=images, return_tensors="pt"))
        inputs.update(self._video_inputs(rows))
        if not inputs:
            return {}
        inputs["mm_token_type_ids"] = ((input_ids == self.image_token_id).long()
                                       + 2 * (input_ids == self.video_token_id).long())
        self._check_token_counts(inputs, input_ids)
        return inputs

    def _check_token_counts(self, inputs: dict[str, Any], input_ids: Any) -> None:
        merge = self.image_processor.merge_size ** 2
        for kind, grid_key, token, token_id in (("images", "image_grid_thw", self.image_token, self.image_token_id),
                                                ("videos", "video_grid_thw", self.video_token, self.video_token_id)):
            grid = inputs.get(grid_key)
            needed = int((grid.prod(dim=-1) // merge).sum()) if grid is not None else 0
            found = int((input_ids == token_id).sum())
            if found != needed:  # the model would fail with an opaque shape error
                raise DataError(f"a batch holds {found} {token} tokens but its {kind} need {needed}: "
                                f"cutoff_len cut through the tokens of one of its {kind} (or a video decoded to "
                                "fewer frames than its header states). Raise cutoff_len, or lower "
                                "image_max_pixels / video_max_pixels / video_maxlen so each takes fewer tokens")
