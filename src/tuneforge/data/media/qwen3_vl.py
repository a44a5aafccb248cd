"""The Qwen3-VL media plugin (templates qwen3_vl, qwen3_vl_nothink, qwen3_5): Qwen2-VL's, with timestamps.

Images expand as for Qwen2-VL (16-pixel patches come from the model's image processor). A video expands per
temporal patch (two frames): `<{t:.1f} seconds>` + <|vision_start|> + (h * w / merge_size**2) x <|video_pad|> +
<|vision_end|>, where t is the mean time of the patch's two frames (HF's Qwen3VLProcessor._calculate_timestamps
over LF's frame timeline), and the video resize counts frames too (Qwen3-VL's smart_resize). This is
LLaMA-Factory 0.9.5's Qwen3VLPlugin expansion, with one fix: LF looks a video's timestamps up by message index
and uses the first video's frame count for every video, which gives wrong tokens (or an IndexError) when a video
is not in the first message or videos differ in length; here each video uses its own.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .qwen2_vl import Qwen2VLPlugin
from .video import probe_video


def frame_timestamps(timeline: tuple[float, ...], fps: float, merge_size: int) -> list[float]:
    """Seconds of each temporal patch: HF's Qwen3VLProcessor._calculate_timestamps (pad, scale, pair means)."""
    indices = list(timeline)
    if len(indices) % merge_size:
        indices.extend(indices[-1] for _ in range(merge_size - len(indices) % merge_size))
    seconds = [index / fps for index in indices]
    return [(seconds[i] + seconds[i + merge_size - 1]) / 2 for i in range(0, len(seconds), merge_size)]


class Qwen3VLPlugin(Qwen2VLPlugin):
    family: ClassVar[str] = "Qwen3-VL"
    frame_aware_resize: ClassVar[bool] = True

    def video_tokens(self, video: Any) -> str:
        assert self.video_geometry is not None
        probe = probe_video(video, self.sampling)
        t, h, w = self.video_grid(video, probe)
        timestamps = frame_timestamps(probe.timeline, self.sampling.fps, self.video_geometry.merge_size)
        frame = self.vision_bos_token + self.video_token * (h * w // self.video_geometry.merge_size ** 2) \
            + self.vision_eos_token
        return "".join(f"<{timestamps[index]:.1f} seconds>" + frame for index in range(t))

    def video_processor_inputs(self, videos: list[list], decoded: list) -> dict[str, Any]:
        if self.video_processor is None:
            return super().video_processor_inputs(videos, decoded)
        # The standard path: frames are already sampled (do_sample_frames=False), as LF calls it.
        metadata = [{"fps": self.sampling.fps, "duration": video.duration, "total_num_frames": len(frames),
                     "frames_indices": list(video.timeline)} for frames, video in zip(videos, decoded)]
        outputs = self.video_processor(videos=videos, video_metadata=metadata, fps=self.sampling.fps,
                                       do_sample_frames=False, return_tensors="pt")
        return {key: outputs[key] for key in ("pixel_values_videos", "video_grid_thw")}
