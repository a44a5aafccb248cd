"""Audio files -> mono float32 waveforms at the model's sampling rate, as LLaMA-Factory 0.9.5 prepares them.

LLaMA-Factory reads an audio with `torchaudio.load`, averages the channels, and resamples with
`torchaudio.functional.resample` (windowed-sinc, Hann window, 6 zero crossings, rolloff 0.99) when the file's
rate differs from `audio_sampling_rate`. The feature extractor then sees that waveform, and the number of audio
tokens depends on its length, so both steps must match.

Decoding: `soundfile` (libsndfile: wav, flac, ogg, mp3) reads the file; anything it cannot read (m4a/aac, opus
in webm, the audio track of a video file) goes through PyAV (FFmpeg). torchaudio >= 2.9 decodes through
torchcodec, i.e. FFmpeg, and the two decoders agree on every sample count of LF's demo audios (lossless files
bit-exactly, mp3 within 5e-6). torchaudio itself is not used: its wheels are built against one torch version
(its compiled ops fail next to ours), and since 2.9 its `load` needs torchcodec plus system FFmpeg libraries.

Resampling: `resample` below is the same windowed-sinc polyphase filter as torchaudio's (no CPU library in our
stack has that exact filter, and any other one gives other features); tests compare it with torchaudio's.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import torch

# torchaudio.functional.resample's defaults, which LLaMA-Factory uses.
LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


def load_audio(audio: Any, sampling_rate: int) -> np.ndarray:
    """The audio as a 1-D float32 array at `sampling_rate`; an array is taken as already prepared (as LF does).

    A DataError names the file when it is missing, cannot be decoded, or holds no samples."""
    import numpy as np

    if isinstance(audio, np.ndarray):
        return audio
    if isinstance(audio, dict):  # the datasets library's Audio feature
        if audio.get("array") is not None:
            return load_audio_array(np.asarray(audio["array"], dtype=np.float32), int(audio["sampling_rate"]),
                                    sampling_rate, audio.get("path") or "an audio array")
        audio = audio.get("bytes") or audio.get("path")
    name = _describe(audio)
    if isinstance(audio, (str, Path)) and not Path(audio).is_file():
        raise DataError(f"audios: {name} does not exist; fix the path in the dataset (relative paths are read "
                        "from media_dir) or remove the row")
    channels, rate = _decode(audio, name)
    import torch

    mono = torch.from_numpy(channels).mean(dim=0)  # channels first, averaged in float32 as torch does
    return load_audio_array(mono.numpy(), rate, sampling_rate, name)


def load_audio_array(samples: np.ndarray, rate: int, sampling_rate: int, name: str) -> np.ndarray:
    """A decoded mono waveform brought to `sampling_rate`; a DataError when it holds no samples."""
    import torch

    if samples.size == 0:
        raise DataError(f"audios: {name} holds no audio samples; replace the file or remove the row")
    if rate == sampling_rate:
        return samples
    return resample(torch.from_numpy(samples), rate, sampling_rate).numpy()


def audio_length(audio: Any, sampling_rate: int) -> int:
    """Samples the audio has at `sampling_rate`, which is all token counting needs (cached per file)."""
    if isinstance(audio, (str, Path)):
        return _file_length(str(audio), sampling_rate)
    return len(load_audio(audio, sampling_rate))


@lru_cache(maxsize=4096)
def _file_length(path: str, sampling_rate: int) -> int:
    return len(load_audio(path, sampling_rate))


def _describe(audio: Any) -> str:
    return repr(str(audio)) if isinstance(audio, (str, Path)) else f"an in-memory audio ({type(audio).__name__})"


def _decode(audio: Any, name: str) -> tuple[np.ndarray, int]:
    """(channels x samples float32, sampling rate) of a file path or bytes."""
    import io

    import soundfile  # type: ignore[import-untyped, unused-ignore]  # no stubs

    if isinstance(audio, bytes):
        source: Any = io.BytesIO(audio)
    elif hasattr(audio, "read"):  # a file object (an API request's audio part): read it from its start
        audio.seek(0)
        source = audio
    else:
        source = str(audio)
    try:
        samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
        return samples.T.copy(), int(rate)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        if hasattr(source, "seek"):
            source.seek(0)
        return _decode_with_pyav(source, name)


def _decode_with_pyav(source: Any, name: str) -> tuple[np.ndarray, int]:
    """The first audio stream of any container FFmpeg reads (m4a, opus, a video's sound track)."""
    import av
    import numpy as np

    try:
        with av.open(source, "r") as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise DataError(f"audios: {name} has no audio stream; give an audio file (wav, flac, mp3, ...) "
                                "or a video that has a sound track")
            # fltp keeps the rate and channels and converts any sample format to float in [-1, 1].
            converter = av.AudioResampler(format="fltp", layout=stream.layout, rate=stream.rate)
            pieces = [out.to_ndarray() for frame in container.decode(stream) for out in converter.resample(frame)]
            pieces += [out.to_ndarray() for out in converter.resample(None)]
            rate = stream.rate
    except (av.FFmpegError, OSError, ValueError) as error:
        raise DataError(f"audios: cannot decode {name} ({type(error).__name__}: {error}); convert it to wav or "
                        "flac, or remove the row") from None
    if not pieces:
        raise DataError(f"audios: {name} holds no audio samples; replace the file or remove the row")
    return np.concatenate(pieces, axis=-1).astype(np.float32, copy=False), int(rate)


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """`waveform` (..., time) resampled from orig_freq to new_freq with torchaudio's windowed-sinc filter.

    Both rates are reduced by their gcd; each output phase gets its own kernel of sinc(t) * hann(t) taps over
    LOWPASS_FILTER_WIDTH zero crossings of the lower rate (times ROLLOFF), applied as one strided convolution.
    The output has ceil(len * new / orig) samples, like torchaudio's."""
    import torch

    if orig_freq == new_freq:
        return waveform
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    kernel, width = _sinc_kernel(orig, new, waveform.dtype)
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1])
    padded = torch.nn.functional.pad(flat, (width, width + orig))
    phases = torch.nn.functional.conv1d(padded[:, None], kernel, stride=orig)  # (n, new, steps)
    out = phases.transpose(1, 2).reshape(flat.shape[0], -1)
    target = math.ceil(new * shape[-1] / orig)
    return out[:, :target].reshape(*shape[:-1], -1)


def _sinc_kernel(orig: int, new: int, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    import torch

    cutoff = min(orig, new) * ROLLOFF  # in units of the reduced rates
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / cutoff)
    # Tap times (in input samples / orig) for each output phase: phase p is shifted by -p / new.
    taps = torch.arange(-width, width + orig, dtype=dtype)[None, None] / orig
    times = torch.arange(0, -new, -1, dtype=dtype)[:, None, None] / new + taps
    times *= cutoff
    times = times.clamp_(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = torch.cos(times * math.pi / LOWPASS_FILTER_WIDTH / 2) ** 2
    times *= math.pi
    kernel = torch.where(times == 0, torch.tensor(1.0).to(times), times.sin() / times)
    kernel *= window * (cutoff / orig)
    return kernel, width


def whisper_frames(samples: int, feature_extractor: Any) -> int:
    """Feature frames a WhisperFeatureExtractor marks as real (its feature_attention_mask sum) for an audio of
    `samples` samples: the audio is cut to one n_samples window (30 s) and one frame is kept per hop_length
    samples, rounding up."""
    return math.ceil(min(samples, feature_extractor.n_samples) / feature_extractor.hop_length)


def qwen2_audio_token_count(frames: int) -> int:
    """Audio tokens the Qwen2-Audio / Qwen2.5-Omni audio tower makes of `frames` feature frames: its stride-2
    convolution halves them (rounding up), then a stride-2 pooling halves them again."""
    after_conv = (frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


def extract_audio_features(feature_extractor: Any, audios: list[np.ndarray], sampling_rate: int) -> dict[str, Any]:
    """input_features + feature_attention_mask of a batch of waveforms, as LLaMA-Factory computes them: every
    audio padded to the extractor's full window (padding="max_length"), the frame mask renamed so it cannot be
    mistaken for the text attention_mask."""
    inputs = dict(feature_extractor(audios, sampling_rate=sampling_rate, return_attention_mask=True,
                                    padding="max_length", return_tensors="pt"))
    inputs["feature_attention_mask"] = inputs.pop("attention_mask")
    return inputs
