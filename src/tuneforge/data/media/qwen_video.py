"""Video frames -> the Qwen-VL models' `pixel_values_videos` / `video_grid_thw`, with or without torchvision.

HF's Qwen-VL video processors (Qwen2VLVideoProcessor, Qwen3VLVideoProcessor) import torchvision for one
resize call; torchvision is not in our CPU stack (PyPI's wheel is a CUDA build whose compiled ops fail next to
a CPU torch). So:
- when torchvision imports, the model directory's own video processor is used (the standard path, e.g. on a
  CUDA machine);
- otherwise `TorchVideoPatcher` computes the same tensors with torch alone, from the video processor's saved
  settings (video_preprocessor_config.json): resize each frame to the processor's smart_resize size with
  torch's antialiased bicubic uint8 interpolation (what torchvision's resize calls on CPU), normalize with the
  fused mean/std, pad the frame count to a multiple of temporal_patch_size and cut (merge-ordered) patches.
Both give identical numbers (tests compare the fallback with LLaMA-Factory fixtures made by the real video
processor). See docs/multimodal.md, "Video and the torchvision question".
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .base import MediaSetupError

if TYPE_CHECKING:
    import torch

    from ...config.groups import ModelArgs

logger = logging.getLogger(__name__)

VIDEO_CONFIG_NAMES = ("video_preprocessor_config.json", "preprocessor_config.json")


@dataclass(frozen=True)
class VideoGeometry:
    """The video processor settings that decide grid sizes and pixel values."""

    patch_size: int
    temporal_patch_size: int
    merge_size: int
    min_pixels: int  # size["shortest_edge"]
    max_pixels: int  # size["longest_edge"]
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    rescale_factor: float
    frame_aware_resize: bool  # Qwen3-VL: smart_resize counts the frames too

    def resized_size(self, num_frames: int, height: int, width: int) -> tuple[int, int]:
        """(height, width) each frame is resized to (HF's smart_resize of the family)."""
        factor = self.patch_size * self.merge_size
        if max(height, width) / min(height, width) > 200:
            raise ValueError(f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}")
        h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
        frames, t_bar = 1, 1
        if self.frame_aware_resize:
            if num_frames < self.temporal_patch_size or height < factor or width < factor:
                raise ValueError(f"a video of {num_frames} frames of {width}x{height} is below the Qwen3-VL minimum "
                                 f"({self.temporal_patch_size} frames of {factor}x{factor})")
            frames = num_frames
            t_bar = round(num_frames / self.temporal_patch_size) * self.temporal_patch_size
        if t_bar * h_bar * w_bar > self.max_pixels:
            beta = math.sqrt(frames * height * width / self.max_pixels)
            h_bar = max(factor, math.floor(height / beta / factor) * factor)
            w_bar = max(factor, math.floor(width / beta / factor) * factor)
        elif t_bar * h_bar * w_bar < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (frames * height * width))
            h_bar = math.ceil(height * beta / factor) * factor
            w_bar = math.ceil(width * beta / factor) * factor
        return h_bar, w_bar

    def grid(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        resized_height, resized_width = self.resized_size(num_frames, height, width)
        return (math.ceil(num_frames / self.temporal_patch_size), resized_height // self.patch_size,
                resized_width // self.patch_size)


# The class defaults of HF's video processors (used for settings a saved config leaves out).
_DEFAULTS = {
    False: dict(patch_size=14, temporal_patch_size=2, merge_size=2, size={"shortest_edge": 128 * 28 * 28,
                "longest_edge": 28 * 28 * 768}, image_mean=[0.48145466, 0.4578275, 0.40821073],
                image_std=[0.26862954, 0.26130258, 0.27577711], rescale_factor=1 / 255),
    True: dict(patch_size=16, temporal_patch_size=2, merge_size=2, size={"shortest_edge": 128 * 32 * 32,
               "longest_edge": 32 * 32 * 768}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
               rescale_factor=1 / 255),
}


def _config_file(model: ModelArgs, name: str) -> str | None:
    """A local or hub-cached file of the model repository, or None when the repository has no such file."""
    from transformers.utils import cached_file

    path = str(model.model_name_or_path)
    if os.path.isdir(path):
        local = os.path.join(path, name)
        return local if os.path.isfile(local) else None
    return cached_file(path, name, cache_dir=model.cache_dir, revision=model.model_revision, token=model.hf_hub_token,
                       _raise_exceptions_for_missing_entries=False)


def read_video_geometry(model: ModelArgs, frame_aware_resize: bool) -> VideoGeometry:
    """The geometry from the model's video processor config (HF's class defaults where unset)."""
    settings: dict[str, Any] = dict(_DEFAULTS[frame_aware_resize])
    for name in VIDEO_CONFIG_NAMES:
        path = _config_file(model, name)
        if path is not None:
            with open(path, encoding="utf-8") as handle:
                saved = json.load(handle)
            settings.update({key: saved[key] for key in settings if key in saved})
            size = dict(settings["size"])
            # Older configs state the pixel limits as min_pixels / max_pixels.
            size["shortest_edge"] = saved.get("min_pixels", size.get("shortest_edge"))
            size["longest_edge"] = saved.get("max_pixels", size.get("longest_edge"))
            settings["size"] = size
            break
    size = settings["size"]
    return VideoGeometry(
        patch_size=int(settings["patch_size"]), temporal_patch_size=int(settings["temporal_patch_size"]),
        merge_size=int(settings["merge_size"]), min_pixels=int(size["shortest_edge"]),
        max_pixels=int(size["longest_edge"]), image_mean=tuple(settings["image_mean"]),
        image_std=tuple(settings["image_std"]), rescale_factor=float(settings["rescale_factor"]),
        frame_aware_resize=frame_aware_resize)


class TorchVideoPatcher:
    """HF's Qwen-VL video processor math in torch alone (no torchvision)."""

    def __init__(self, geometry: VideoGeometry):
        self.geometry = geometry

    def _patches(self, frames: list) -> tuple[torch.Tensor, list[int]]:
        import numpy as np
        import torch
        from torch.nn.functional import interpolate

        g = self.geometry
        video = torch.from_numpy(np.stack([np.asarray(frame.convert("RGB")) for frame in frames]))
        video = video.permute(0, 3, 1, 2).contiguous()  # (T, C, H, W) uint8, as HF's processors build it
        num_frames, channels, height, width = video.shape
        resized = g.resized_size(num_frames, height, width)
        if resized != (height, width):
            # torchvision's CPU resize of a uint8 tensor with BICUBIC is exactly this call.
            video = interpolate(video, size=list(resized), mode="bicubic", align_corners=False, antialias=True)
        mean = torch.tensor(g.image_mean) * (1.0 / g.rescale_factor)  # HF's fused rescale + normalize
        std = torch.tensor(g.image_std) * (1.0 / g.rescale_factor)
        video = (video.to(torch.float32) - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
        if pad := -num_frames % g.temporal_patch_size:
            video = torch.cat([video, video[-1:].expand(pad, -1, -1, -1)])
        grid_t = video.shape[0] // g.temporal_patch_size
        grid_h, grid_w = resized[0] // g.patch_size, resized[1] // g.patch_size
        m, p = g.merge_size, g.patch_size
        patches = video.reshape(grid_t, g.temporal_patch_size, channels, grid_h // m, m, p, grid_w // m, m, p)
        patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        flat = patches.reshape(grid_t * grid_h * grid_w, channels * g.temporal_patch_size * p * p)
        return flat, [grid_t, grid_h, grid_w]

    def __call__(self, videos: list[list]) -> dict[str, Any]:
        import torch

        pieces = [self._patches(frames) for frames in videos]
        return {"pixel_values_videos": torch.cat([patches for patches, _ in pieces]),
                "video_grid_thw": torch.tensor([grid for _, grid in pieces])}


def torchvision_works() -> bool:
    """Whether torchvision imports with its transforms (the standard HF video processors need it)."""
    try:
        importlib.import_module("torchvision.transforms.v2.functional")
    except Exception as error:  # a CUDA wheel next to a CPU torch fails with RuntimeError, not ImportError
        logger.debug("torchvision unusable (%s: %s); using tuneforge's torch video patcher", type(error).__name__,
                     error)
        return False
    return True


def load_video_processor(model: ModelArgs) -> Any | None:
    """The model directory's own video processor when torchvision works, else None (use TorchVideoPatcher)."""
    if not torchvision_works():
        return None
    from transformers import AutoVideoProcessor

    try:
        return AutoVideoProcessor.from_pretrained(model.model_name_or_path, trust_remote_code=model.trust_remote_code,
                                                  cache_dir=model.cache_dir, revision=model.model_revision,
                                                  token=model.hf_hub_token)
    except (OSError, ValueError, TypeError, KeyError, ImportError) as error:
        raise MediaSetupError(f"model_name_or_path: {model.model_name_or_path!r} has no usable video processor "
                              f"({type(error).__name__}: {error}); use the model's own directory") from None
