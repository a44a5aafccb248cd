"""The Qwen2.5-Omni (thinker) media plugin: images, videos and audios, and a video's sound interleaved with it.

Expansion (LLaMA-Factory 0.9.5's qwen2_omni plugin; token strings from the template's `media` facts):
- `<image>` -> vision_bos + N x image_token + vision_eos, N = the Qwen2-VL patch grid / merge_size**2 of the
  image after LF's pixel limits (image_max_pixels / image_min_pixels);
- `<audio>` -> audio_bos + N x audio_token + audio_eos, N from the audio's length (audio.py);
- `<video>` -> vision_bos + N x video_token + vision_eos over the video's sampled frames (data/media/video.py);
- with `use_audio_in_video: true`, each `<video>` must be followed by an `<audio>` (the video's sound: a file
  of its own, or the video file itself, whose sound track is read); the pair becomes vision_bos + audio_bos +
  chunks + audio_eos + vision_eos, where each 2-second chunk holds that chunk's video tokens then its audio
  tokens (a video token's time is its temporal grid index x temporal_patch_size / sampled fps x 25 position
  ids per second; an audio token's time is its index), and the `<audio>` itself disappears.

In a batch, `batch_inputs` gives the thinker `pixel_values` / `image_grid_thw` (the image processor),
`pixel_values_videos` / `video_grid_thw` / `video_second_per_grid`, `input_features` /
`feature_attention_mask` (the WhisperFeatureExtractor) and `use_audio_in_video`; the thinker lays out its
3D positions (M-RoPE, audio interleaving) from those itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import DataError
from .audio import audio_length, extract_audio_features, load_audio, qwen2_audio_token_count, whisper_frames
from .base import MediaPlugin, MediaSetupError, RowMedia, replace_placeholders
from .images import ImageLimits, image_size, load_image, regularized_size
from .loading import load_image_processor, token_id

if TYPE_CHECKING:
    from ...config.groups import ModelArgs

# Qwen2.5-Omni's time scale (processor / thinker config default, which LLaMA-Factory uses): 25 position ids per
# second of video or audio, and interleaving chunks of 2 seconds.
POSITION_IDS_PER_SECOND = 25
SECONDS_PER_CHUNK = 2


def chunk_sizes(times: list[int], per_chunk: int) -> list[int]:
    """Sizes of the chunks HF's Qwen2.5-Omni processor (get_chunked_index, which LLaMA-Factory calls) cuts the
    ascending token times into: a chunk closes at the first time >= k * per_chunk, and k grows by one per
    closed chunk (so a time that jumps several chunks ahead closes them one token at a time, as HF does)."""
    sizes, start, chunk = [], 0, 1
    for index, time in enumerate(times):
        if time >= chunk * per_chunk:
            sizes.append(index - start)
            start, chunk = index, chunk + 1
    sizes.append(len(times) - start)
    return sizes


def _refuse_qwen3_omni(model: ModelArgs) -> None:
    """LLaMA-Factory runs the qwen3_omni templates through this plugin too, but Qwen3-Omni counts audio tokens
    by 100-frame windows and has Qwen3-VL's vision processor; tuneforge does not implement those yet."""
    import json
    import os

    path = os.path.join(str(model.model_name_or_path), "config.json")
    if not os.path.isfile(path):
        return  # a hub id: the processor loading below names any problem
    with open(path, encoding="utf-8") as handle:
        model_type = str(json.load(handle).get("model_type", ""))
    if model_type.startswith("qwen3_omni"):
        raise MediaSetupError(f"model_name_or_path: {model.model_name_or_path!r} is a Qwen3-Omni model "
                              f"({model_type}); its media are not supported yet (its audio token count and vision "
                              "processor differ from Qwen2.5-Omni's). Train it on text only, or use Qwen2.5-Omni")


@dataclass(repr=False)
class Qwen2OmniPlugin(MediaPlugin):
    kinds: ClassVar[tuple[str, ...]] = ("images", "videos", "audios")

    image_processor: Any
    feature_extractor: Any
    model: Any = None  # the ModelArgs, for the video processor (loaded on the first video)
    image_token: str = "<|IMAGE|>"
    video_token: str = "<|VIDEO|>"
    audio_token: str = "<|AUDIO|>"
    token_ids: dict[str, int] = field(default_factory=dict)  # token string -> id
    vision_bos_token: str = "<|vision_bos|>"
    vision_eos_token: str = "<|vision_eos|>"
    audio_bos_token: str = "<|audio_bos|>"
    audio_eos_token: str = "<|audio_eos|>"
    limits: ImageLimits = ImageLimits(qwen_vl_sides=True)
    video_limits: ImageLimits = ImageLimits(max_pixels=256 * 256, min_pixels=16 * 16, qwen_vl_sides=True)
    video_fps: float = 2.0
    video_maxlen: int = 128
    sampling_rate: int = 16000
    use_audio_in_video: bool = False
    placeholders: dict[str, str] = field(default_factory=lambda: {"images": "<image>", "videos": "<video>",
                                                                  "audios": "<audio>"})
    _video: Any = field(default=None, init=False)  # the video helpers, built on the first video

    @classmethod
    def create(cls, facts: dict[str, Any], model: ModelArgs, tokenizer: Any) -> Qwen2OmniPlugin:
        from transformers import WhisperFeatureExtractor

        from ..checks import PLACEHOLDERS

        for key in ("image_do_pan_and_scan", "crop_to_patches"):
            if getattr(model, key):
                raise MediaSetupError(f"{key}: the Qwen2.5-Omni models do not use it (a Gemma 3 / InternVL key); "
                                      f"remove `{key}: true` from the config")
        _refuse_qwen3_omni(model)
        image_processor = load_image_processor(model)
        try:
            feature_extractor = WhisperFeatureExtractor.from_pretrained(str(model.model_name_or_path),
                                                                        cache_dir=model.cache_dir,
                                                                        revision=model.model_revision,
                                                                        token=model.hf_hub_token)
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise MediaSetupError(f"model_name_or_path: {model.model_name_or_path!r} has no audio feature extractor "
                                  f"({error}); use the Qwen2.5-Omni model's own directory") from None
        tokens = {name: facts.get(name, default) for name, default in (
            ("image_token", "<|IMAGE|>"), ("video_token", "<|VIDEO|>"), ("audio_token", "<|AUDIO|>"),
            ("vision_bos_token", "<|vision_bos|>"), ("vision_eos_token", "<|vision_eos|>"),
            ("audio_bos_token", "<|audio_bos|>"), ("audio_eos_token", "<|audio_eos|>"))}
        token_ids = {token: token_id(tokenizer, token) for token in tokens.values()}
        return cls(image_processor=image_processor, feature_extractor=feature_extractor, model=model,
                   token_ids=token_ids, **tokens,
                   limits=ImageLimits(max_pixels=model.image_max_pixels, min_pixels=model.image_min_pixels,
                                      qwen_vl_sides=True),
                   video_limits=ImageLimits(max_pixels=model.video_max_pixels, min_pixels=model.video_min_pixels,
                                            qwen_vl_sides=True),
                   video_fps=model.video_fps, video_maxlen=model.video_maxlen,
                   sampling_rate=model.audio_sampling_rate, use_audio_in_video=model.use_audio_in_video,
                   placeholders=dict(PLACEHOLDERS))

    def cache_key(self) -> str:  # everything that changes token counts
        processor, extractor = self.image_processor, self.feature_extractor
        tokens = (self.image_token, self.video_token, self.audio_token, self.vision_bos_token, self.vision_eos_token,
                  self.audio_bos_token, self.audio_eos_token)
        return (f"Qwen2OmniPlugin({tokens!r}, {self.limits!r}, {self.video_limits!r}, fps={self.video_fps}, "
                f"maxlen={self.video_maxlen}, rate={self.sampling_rate}, audio_in_video={self.use_audio_in_video}, "
                f"{self.placeholders!r}, patch={processor.patch_size}, merge={processor.merge_size}, "
                f"size={dict(processor.size)!r}, hop={extractor.hop_length}, window={extractor.n_samples})")

    # Token counts ---------------------------------------------------------------------------------------------

    @property
    def merge_length(self) -> int:
        return int(self.image_processor.merge_size) ** 2

    def image_seqlen(self, image: Any) -> int:
        width, height = regularized_size(*image_size(image), self.limits)
        return self.image_processor.get_number_of_image_patches(height, width, {}) // self.merge_length

    def audio_seqlen(self, audio: Any) -> int:
        return qwen2_audio_token_count(whisper_frames(audio_length(audio, self.sampling_rate),
                                                      self.feature_extractor))

    def video_helpers(self) -> Any:
        """The shared video decoder (data/media/video.py) and the Qwen video patcher, imported on first use."""
        if self._video is None:
            self._video = QwenVideoFrames.create(self)
        return self._video

    def video_seqlen(self, video: Any) -> int:
        t, h, w = self.video_helpers().grid(video)
        return t * h * w // self.merge_length

    def _video_with_audio(self, video: Any, audio: Any) -> str:
        """The interleaved tokens of a video and its sound (LF's use_audio_in_video layout)."""
        helpers = self.video_helpers()
        t, h, w = helpers.grid(video)
        seconds_per_grid = helpers.seconds_per_grid(video)
        per_frame = (h // self.image_processor.merge_size) * (w // self.image_processor.merge_size)
        video_times = [int(index * seconds_per_grid * POSITION_IDS_PER_SECOND) for index in range(t)
                       for _ in range(per_frame)]
        per_chunk = POSITION_IDS_PER_SECOND * SECONDS_PER_CHUNK
        video_chunks = chunk_sizes(video_times, per_chunk)
        audio_chunks = chunk_sizes(list(range(self.audio_seqlen(audio))), per_chunk)
        body = ""
        for j in range(max(len(video_chunks), len(audio_chunks))):
            if j < len(video_chunks):
                body += self.video_token * video_chunks[j]
            if j < len(audio_chunks):
                body += self.audio_token * audio_chunks[j]
        return self.vision_bos_token + self.audio_bos_token + body + self.audio_eos_token + self.vision_eos_token

    # Expansion ------------------------------------------------------------------------------------------------

    def expand_messages(self, messages: list[dict], media: RowMedia) -> list[dict]:
        """Copies of the messages with every placeholder expanded into its tokens."""
        self.check_kinds(media, "Qwen2.5-Omni")
        self.check_placeholder_counts(messages, media)
        images = [self.vision_bos_token + self.image_token * self.image_seqlen(image) + self.vision_eos_token
                  for image in media.images]
        messages = replace_placeholders(messages, self.placeholders["images"], images)
        if self.use_audio_in_video and media.videos and media.audios:
            return self._expand_audio_in_video(messages, media)
        audios = [self.audio_bos_token + self.audio_token * self.audio_seqlen(audio) + self.audio_eos_token
                  for audio in media.audios]
        videos = [self.vision_bos_token + self.video_token * self.video_seqlen(video) + self.vision_eos_token
                  for video in media.videos]
        messages = replace_placeholders(messages, self.placeholders["audios"], audios)
        return replace_placeholders(messages, self.placeholders["videos"], videos)

    def _expand_audio_in_video(self, messages: list[dict], media: RowMedia) -> list[dict]:
        video_mark, audio_mark = self.placeholders["videos"], self.placeholders["audios"]
        if len(media.videos) != len(media.audios):
            raise DataError(f"videos: with use_audio_in_video each video needs its sound: a row has "
                            f"{len(media.videos)} video(s) but {len(media.audios)} audio(s); give each {video_mark} "
                            f"an {audio_mark} (the video file itself works when it has a sound track)")
        expanded, index = [], 0
        for message in messages:
            content = message["content"]
            if audio_mark in content and video_mark not in content:
                raise DataError(f"audios: with use_audio_in_video every {audio_mark} must follow its {video_mark} in "
                                "the same message")
            while video_mark in content:
                start = content.index(video_mark)
                after = content.find(audio_mark, start)
                if after == -1:
                    raise DataError(f"videos: with use_audio_in_video each {video_mark} must be followed by an "
                                    f"{audio_mark} (its sound) in the same message")
                tokens = self._video_with_audio(media.videos[index], media.audios[index])
                content = (content[:start] + tokens + content[start + len(video_mark):after]
                           + content[after + len(audio_mark):])
                index += 1
            expanded.append({**message, "content": content})
        return expanded

    # Batch tensors --------------------------------------------------------------------------------------------

    def batch_inputs(self, rows: list[RowMedia], input_ids: Any) -> dict[str, Any]:
        """The thinker's media inputs for a padded batch ({} when no row has media)."""
        inputs: dict[str, Any] = {}
        images = [load_image(image, self.limits) for row in rows for image in row.images]
        if images:
            inputs.update(self.image_processor(images=images, return_tensors="pt"))
        videos = [video for row in rows for video in row.videos]
        if videos:
            inputs.update(self.video_helpers().batch(videos))
        audios = [load_audio(audio, self.sampling_rate) for row in rows for audio in row.audios]
        if audios:
            inputs.update(extract_audio_features(self.feature_extractor, audios, self.sampling_rate))
        if not inputs:
            return {}
        if videos and audios and self.use_audio_in_video:
            inputs["use_audio_in_video"] = True
        self._check_token_counts(inputs, input_ids)
        return inputs

    def _check_token_counts(self, inputs: dict[str, Any], input_ids: Any) -> None:
        needed = {self.image_token: 0, self.video_token: 0, self.audio_token: 0}
        for grid_key, token in (("image_grid_thw", self.image_token), ("video_grid_thw", self.video_token)):
            if grid_key in inputs:
                needed[token] = int((inputs[grid_key].prod(dim=-1) // self.merge_length).sum())
        if "feature_attention_mask" in inputs:
            needed[self.audio_token] = sum(qwen2_audio_token_count(int(frames))
                                           for frames in inputs["feature_attention_mask"].sum(-1))
        for token, count in needed.items():
            found = int((input_ids == self.token_ids[token]).sum())
            if found != count:  # the model would fail with an opaque shape error
                raise DataError(f"a batch holds {found} {token} tokens but its media need {count}: cutoff_len cut "
                                "through a medium's tokens. Raise cutoff_len, or use smaller / shorter media")


@dataclass
class QwenVideoFrames:
    """Videos for Qwen2.5-Omni through the shared video decoder (video.py) and the Qwen video processor
    (qwen_video.py: the model's own with torchvision, tuneforge's torch patcher without)."""

    plugin: Qwen2OmniPlugin
    geometry: Any
    processor: Any
    sampling: Any

    @classmethod
    def create(cls, plugin: Qwen2OmniPlugin) -> QwenVideoFrames:
        try:
            # The shared video modules (another branch of work until merged): ignore codes for mypy meanwhile.
            from .qwen_video import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
                load_video_processor,
                read_video_geometry,
            )
            from .video import VideoSampling  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError:
            raise DataError("videos: this installation has no video decoder (tuneforge.data.media.video); "
                            "Qwen2.5-Omni videos need it. Remove the videos column or update tuneforge") from None
        model = plugin.model
        try:
            processor = load_video_processor(model)
        except MediaSetupError as error:
            raise DataError(f"videos: {error}") from None
        return cls(plugin, read_video_geometry(model, False), processor,
                   VideoSampling(fps=plugin.video_fps, maxlen=plugin.video_maxlen))

    def grid(self, video: Any) -> tuple[int, int, int]:
        from .video import probe_video  # type: ignore[import-untyped, import-not-found, unused-ignore]

        probe = probe_video(video, self.sampling)
        width, height = regularized_size(probe.width, probe.height, self.plugin.video_limits)
        num_frames = len(probe.sample_indices)
        num_frames += num_frames % 2  # LF repeats the last frame of an odd count
        try:
            return self.geometry.grid(num_frames, height, width)
        except ValueError as error:
            raise DataError(f"videos: {video!r} cannot be fed to the Qwen2.5-Omni models: {error}") from None

    def seconds_per_grid(self, video: Any) -> float:
        """temporal_patch_size / sampled fps: the seconds one temporal grid step spans (LF's
        video_second_per_grid)."""
        from .video import probe_video  # type: ignore[import-untyped, import-not-found, unused-ignore]

        return self.geometry.temporal_patch_size / probe_video(video, self.sampling).sampled_fps

    def batch(self, videos: list) -> dict[str, Any]:
        import torch

        from .qwen_video import TorchVideoPatcher  # type: ignore[import-untyped, import-not-found, unused-ignore]
        from .video import decode_video  # type: ignore[import-untyped, import-not-found, unused-ignore]

        frames, fps = [], []
        for video in videos:
            decoded = decode_video(video, self.sampling)
            kept = list(decoded.frames)
            if len(kept) % 2:
                kept.append(kept[-1])
            frames.append([load_image(frame, self.plugin.video_limits) for frame in kept])
            fps.append(decoded.sampled_fps)
        if self.processor is not None:
            inputs = dict(self.processor(videos=frames, return_tensors="pt"))
        else:
            inputs = TorchVideoPatcher(self.geometry)(frames)
        inputs["video_second_per_grid"] = torch.tensor([self.geometry.temporal_patch_size / rate for rate in fps])
        return inputs
