"""The Qwen2-Audio media plugin: audio placeholders -> audio tokens, audio files -> Whisper features.

Each `<audio>` in a message becomes <|audio_bos|> + N x <|AUDIO|> + <|audio_eos|>, where N is what the audio
tower makes of the audio's feature frames (audio.qwen2_audio_token_count of audio.whisper_frames). N depends
only on the audio's length at `audio_sampling_rate`, so preprocessing decodes each file once for its length
and computes no features (LLaMA-Factory 0.9.5 runs the whole feature extractor to read the same number).
The bos/eos strings come from the model's processor (Qwen2AudioProcessor.audio_bos_token / audio_eos_token),
as LLaMA-Factory reads them; the template's facts give <|AUDIO|>.

In a batch, `batch_inputs` gives the model `input_features` (one 30-second log-mel window per audio, in row
order) and `feature_attention_mask` (which frames are real), made by the model's WhisperFeatureExtractor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import DataError
from .audio import audio_length, extract_audio_features, load_audio, qwen2_audio_token_count, whisper_frames
from .base import MediaPlugin, MediaSetupError, RowMedia, replace_placeholders
from .loading import load_processor, token_id

if TYPE_CHECKING:
    from ...config.groups import ModelArgs

# Media keys other families read; a non-default value would change nothing for an audio-only model.
_DEFAULTS_OF_UNUSED_KEYS = {
    "image_max_pixels": 768 * 768, "image_min_pixels": 32 * 32, "image_do_pan_and_scan": False,
    "crop_to_patches": False, "video_max_pixels": 256 * 256, "video_min_pixels": 16 * 16, "video_fps": 2.0,
    "video_maxlen": 128, "use_audio_in_video": False,
}


def refuse_keys(model: ModelArgs, defaults: dict[str, Any], family: str) -> None:
    """A MediaSetupError for a media key set to a non-default value that `family` would ignore."""
    for key, default in defaults.items():
        if getattr(model, key) != default:
            raise MediaSetupError(f"{key}: the {family} models do not use it (they take no images or videos); "
                                  f"remove `{key}` from the config")


@dataclass(repr=False)
class Qwen2AudioPlugin(MediaPlugin):
    kinds: ClassVar[tuple[str, ...]] = ("audios",)

    feature_extractor: Any
    sampling_rate: int = 16000
    audio_token: str = "<|AUDIO|>"
    audio_token_id: int = -1  # the tokenizer's id of audio_token
    audio_bos_token: str = "<|audio_bos|>"
    audio_eos_token: str = "<|audio_eos|>"
    placeholder: str = "<audio>"
    placeholders: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.placeholders = {"audios": self.placeholder}

    @classmethod
    def create(cls, facts: dict[str, Any], model: ModelArgs, tokenizer: Any) -> Qwen2AudioPlugin:
        from ..checks import PLACEHOLDERS

        refuse_keys(model, _DEFAULTS_OF_UNUSED_KEYS, "Qwen2-Audio")
        processor = load_processor(model, "audio processor")
        feature_extractor = getattr(processor, "feature_extractor", None)
        if feature_extractor is None:
            raise MediaSetupError(f"model_name_or_path: {model.model_name_or_path!r} has no audio feature "
                                  "extractor (preprocessor_config.json); use the Qwen2-Audio model's own directory")
        audio_token = facts.get("audio_token", "<|AUDIO|>")
        bos = getattr(processor, "audio_bos_token", None) or facts.get("audio_bos_token", "<|audio_bos|>")
        eos = getattr(processor, "audio_eos_token", None) or facts.get("audio_eos_token", "<|audio_eos|>")
        for token in (bos, eos):
            token_id(tokenizer, token)
        return cls(feature_extractor=feature_extractor, sampling_rate=model.audio_sampling_rate,
                   audio_token=audio_token, audio_token_id=token_id(tokenizer, audio_token),
                   audio_bos_token=bos, audio_eos_token=eos, placeholder=PLACEHOLDERS["audios"])

    def cache_key(self) -> str:  # everything that changes token counts
        extractor = self.feature_extractor
        return (f"Qwen2AudioPlugin({self.audio_token!r}, {self.audio_bos_token!r}, {self.audio_eos_token!r}, "
                f"{self.placeholder!r}, rate={self.sampling_rate}, hop={extractor.hop_length}, "
                f"window={extractor.n_samples})")

    def audio_seqlen(self, audio: Any) -> int:
        """How many <|AUDIO|> tokens stand for this audio."""
        return qwen2_audio_token_count(whisper_frames(audio_length(audio, self.sampling_rate),
                                                      self.feature_extractor))

    def expand_messages(self, messages: list[dict], media: RowMedia) -> list[dict]:
        """Copies of the messages with every audio placeholder expanded into the audio's tokens."""
        self.check_kinds(media, "Qwen2-Audio")
        self.check_placeholder_counts(messages, media)
        tokens = [self.audio_bos_token + self.audio_token * self.audio_seqlen(audio) + self.audio_eos_token
                  for audio in media.audios]
        return replace_placeholders(messages, self.placeholder, tokens)

    def batch_inputs(self, rows: list[RowMedia], input_ids: Any) -> dict[str, Any]:
        """input_features and feature_attention_mask for a padded batch ({} when no row has an audio)."""
        audios = [load_audio(audio, self.sampling_rate) for row in rows for audio in row.audios]
        if not audios:
            return {}
        inputs = extract_audio_features(self.feature_extractor, audios, self.sampling_rate)
        needed = sum(qwen2_audio_token_count(int(frames)) for frames in inputs["feature_attention_mask"].sum(-1))
        found = int((input_ids == self.audio_token_id).sum())
        if found != needed:  # the model would fail with an opaque shape error
            raise DataError(f"a batch holds {found} {self.audio_token} tokens but its audios need {needed}: "
                            "cutoff_len cut through an audio's tokens. Raise cutoff_len, or use shorter audios")
        return inputs
