"""Open videos and sample their frames as LLaMA-Factory 0.9.5 does (shared by every family that takes videos).

A video in a dataset row is a file (decoded with PyAV), a folder of frame images (sorted by name), or a list
of frame images. LLaMA-Factory's rules, which decide token counts and so must match exactly:
- a file keeps `n = min(total_frames, video_maxlen, max(1, floor(duration_s * video_fps)))` frames, at the
  indices `linspace(0, total_frames - 1, n)` truncated to int (all `video_maxlen` first frames when the stream
  does not know its frame count);
- frames given as images (list or folder) are taken as already sampled: all of them, at `video_fps`;
- `sampled_fps` (LF's fps_per_video) is n / duration_s, used by Qwen2.5-VL's second_per_grid_ts;
- `timeline` (LF's frames_indices) is each kept frame's time in units of 1 / video_fps, used by Qwen3-VL's
  timestamps.

`probe_video` reads the same facts from the header alone (no frame decoded), so counting a video's tokens at
preprocessing time stays cheap; `decode_video` decodes the kept frames. Every failure is a DataError naming
the file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from ...errors import DataError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class VideoSampling:
    """LLaMA-Factory's `video_fps` and `video_maxlen`."""

    fps: float = 2.0
    maxlen: int = 128


@dataclass(frozen=True)
class VideoProbe:
    """What the header says about a video: frame size, and which frames decoding will keep."""

    width: int
    height: int
    sample_indices: tuple[int, ...]
    duration: float  # seconds
    sampled_fps: float
    timeline: tuple[float, ...]


@dataclass(frozen=True)
class DecodedVideo:
    """The kept frames (PIL images, in order) with the timing facts the Qwen families feed their models."""

    frames: list
    duration: float
    sampled_fps: float
    timeline: tuple[float, ...]


def frame_list(video: Any) -> list | None:
    """The frames of a video given as images (a list, or a folder of image files), else None (a file)."""
    if isinstance(video, (list, tuple)):
        return list(video)
    if isinstance(video, (str, os.PathLike)) and os.path.isdir(video):
        names = sorted(name for name in os.listdir(video) if name.lower().endswith(FRAME_SUFFIXES))
        if not names:
            raise DataError(f"videos: the folder {str(video)!r} holds no frame images ({', '.join(FRAME_SUFFIXES)}); "
                            "put the video's frames there or give a video file")
        return [os.path.join(video, name) for name in names]
    return None


def _frames_probe(frames: list, sampling: VideoSampling) -> VideoProbe:
    from .images import image_size

    if not frames:
        raise DataError("videos: a video given as a list of frames has no frames; give at least one image")
    width, height = image_size(frames[0])
    count = len(frames)
    return VideoProbe(width, height, tuple(range(count)), count / sampling.fps, sampling.fps,
                      tuple(float(index) for index in range(count)))


def _open(path: Any):
    import av

    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path):
        raise DataError(f"videos: the file {str(path)!r} does not exist; check the path (relative paths are "
                        "resolved against media_dir) or remove the row")
    if hasattr(path, "seek"):  # a file object (an API request's video part) is read again for the pixels
        path.seek(0)
    try:
        container = av.open(path, "r")
    except (av.FFmpegError, OSError, ValueError) as error:
        raise DataError(f"videos: cannot open {str(path)!r} as a video ({error}); check the file or remove the row")\
            from None
    if not container.streams.video:
        container.close()
        raise DataError(f"videos: {str(path)!r} has no video stream; give a video file or a folder of frames")
    return container


def _sample_indices(total_frames: int, duration: float, sampling: VideoSampling) -> list[int]:
    import numpy as np

    if total_frames == 0:  # the stream does not know its length: LF keeps the first video_maxlen frames
        return list(range(sampling.maxlen))
    count = min(total_frames, sampling.maxlen, max(1, math.floor(duration * sampling.fps)))
    return [int(index) for index in np.linspace(0, total_frames - 1, count).astype(np.int32)]


def _stream_probe(path: Any, stream: Any, sampling: VideoSampling) -> VideoProbe:
    average_fps = float(stream.average_rate) if stream.average_rate else 0.0
    if stream.duration is not None:
        duration = float(stream.duration * stream.time_base)
    elif stream.frames and average_fps > 0:  # LF fails here; the frame count over the rate is the duration
        duration = stream.frames / average_fps
    else:
        raise DataError(f"videos: {str(path)!r} states neither its duration nor its frame rate, so its frames "
                        "cannot be sampled; re-encode it (ffmpeg -i in -c:v libx264 out.mp4) or give its frames")
    if duration <= 0 or average_fps <= 0:
        raise DataError(f"videos: {str(path)!r} has no frames (duration {duration:g} s); check the file or "
                        "remove the row")
    indices = _sample_indices(stream.frames, duration, sampling)
    timeline = tuple(index / average_fps * sampling.fps for index in indices)
    return VideoProbe(stream.width, stream.height, tuple(indices), duration, len(indices) / duration, timeline)


def probe_video(video: Any, sampling: VideoSampling) -> VideoProbe:
    """The video's frame size and kept frames, from the header (or the first frame image) only."""
    frames = frame_list(video)
    if frames is not None:
        return _frames_probe(frames, sampling)
    container = _open(video)
    try:
        return _stream_probe(video, container.streams.video[0], sampling)
    finally:
        container.close()


def decode_video(video: Any, sampling: VideoSampling) -> DecodedVideo:
    """The kept frames of a video as RGB-convertible PIL images, with LLaMA-Factory's timing facts."""
    import av

    from .images import open_image

    frames = frame_list(video)
    if frames is not None:
        probe = _frames_probe(frames, sampling)
        return DecodedVideo([open_image(frame) for frame in frames], probe.duration, probe.sampled_fps,
                            probe.timeline)
    container = _open(video)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-threaded decoding: the same frames, about 2.5x faster
        probe = _stream_probe(video, stream, sampling)
        wanted = set(probe.sample_indices)
        kept = []
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    kept.append(frame.to_image())
        except (av.FFmpegError, ValueError) as error:
            raise DataError(f"videos: cannot decode {str(video)!r} ({error}); check the file or remove the row")\
                from None
    finally:
        container.close()
    if not kept:
        raise DataError(f"videos: {str(video)!r} decoded to zero frames; check the file or remove the row")
    return DecodedVideo(kept, probe.duration, probe.sampled_fps, probe.timeline)
