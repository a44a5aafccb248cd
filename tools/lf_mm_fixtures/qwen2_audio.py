"""Make the Qwen2-Audio token-parity fixture with LLaMA-Factory 0.9.5's own code
(tests/fixtures/mm/qwen2_audio_audio.json).

Run with LLaMA-Factory's venv and a real torchaudio for its audio path:

    /work/main/.venv/bin/python -m pip install --no-deps --target /tmp/lf_ta torchaudio==2.9.1
    rm /tmp/lf_ta/torchaudio/lib/*.so
    /work/lfvenv/bin/python tools/lf_mm_fixtures/qwen2_audio.py --torchaudio-dir /tmp/lf_ta

1. builds the tiny Qwen2-Audio with tuneforge's builder (tuneforge.testing.tiny_audio_qwen2, run in tuneforge's
   venv, --tf-python);
2. runs LF's load_tokenizer (AutoProcessor), template and get_dataset on mllm_audio_demo, and LF's mm plugin
   get_mm_inputs per row;
3. writes input_ids, labels and the feature extractor outputs (input_features shape, sums, first values;
   feature_attention_mask sums) to tests/fixtures/mm/qwen2_audio_audio.json.

torchaudio: LF's venv here holds only a stand-in module (no audio functions). LF reads audio with
`torchaudio.load` and resamples with `torchaudio.functional.resample`. The resampler is pure torch code, so the
real torchaudio 2.9.1 package is put first on sys.path with its compiled libraries removed (they are built for
another torch and are not needed). Since 2.9, `torchaudio.load` is a wrapper around torchcodec's FFmpeg
decoder; torchcodec needs system FFmpeg libraries this machine lacks, so `load` is replaced by the same FFmpeg
decoders reached through PyAV (float32, channels first, as torchcodec returns). tuneforge decodes these files
with libsndfile, so the fixture also measures the difference between the two decoders.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "tests" / "fixtures" / "mm"
FAMILY, TEMPLATE, DATASET = "qwen2_audio", "qwen2_audio", "mllm_audio_demo"


def build_model(tf_python: str, model_dir: Path) -> None:
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r})\n"
            "from tuneforge.testing.tiny_audio_qwen2 import build_tiny_qwen2_audio\n"
            f"build_tiny_qwen2_audio({str(model_dir)!r})")
    subprocess.run([tf_python, "-c", code], check=True)


def ffmpeg_load(uri, *args, **kwargs):
    """torchaudio 2.9's load (torchcodec's FFmpeg AudioDecoder): float32 (channels, samples), sample rate."""
    import av
    import numpy as np
    import torch

    with av.open(str(uri)) as container:
        stream = container.streams.audio[0]
        converter = av.AudioResampler(format="fltp", layout=stream.layout, rate=stream.rate)
        pieces = [out.to_ndarray() for frame in container.decode(stream) for out in converter.resample(frame)]
        pieces += [out.to_ndarray() for out in converter.resample(None)]
        return torch.from_numpy(np.concatenate(pieces, axis=-1).astype(np.float32)), stream.rate


def install_torchaudio(folder: str) -> str:
    sys.path.insert(0, folder)
    import torchaudio

    assert hasattr(torchaudio.functional, "resample"), f"{folder} holds no real torchaudio"
    torchaudio.load = ffmpeg_load
    return torchaudio.__version__


def summary(tensor) -> dict:
    import torch

    values = tensor.to(torch.float64)
    return {"shape": list(tensor.shape), "sum": float(values.sum()), "abs_sum": float(values.abs().sum()),
            "first": [round(float(v), 6) for v in values.flatten()[:8]]}


# A deterministic two-tone signal resampled by torchaudio at rates LF meets in practice (mp3 at 44.1/48 kHz,
# 8 kHz telephone audio), so tests can compare tuneforge's resampler with torchaudio's directly.
PROBE_RATES = [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 24000)]


def resample_probes() -> list[dict]:
    import math

    import torch
    import torchaudio

    probes = []
    for orig, new in PROBE_RATES:
        t = torch.arange(orig // 2, dtype=torch.float32) / orig  # half a second
        wave = 0.5 * torch.sin(2 * math.pi * 440 * t) + 0.25 * torch.sin(2 * math.pi * 3000 * t)
        out = torchaudio.functional.resample(wave[None], orig, new)[0]
        probes.append({"orig": orig, "new": new, "length": out.numel(), "sum": float(out.double().sum()),
                       "abs_sum": float(out.double().abs().sum()),
                       "values": [float(v) for v in out[100:116]]})
    return probes


def run_case(model_dir: Path, demo_dir: str, out_root: Path) -> dict:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    keys = {"template": TEMPLATE, "dataset": DATASET, "cutoff_len": 4096}
    args = {"model_name_or_path": str(model_dir), "dataset_dir": demo_dir, "finetuning_type": "lora",
            "do_train": True, "output_dir": str(out_root / FAMILY), "overwrite_cache": True, "report_to": "none",
            "preprocessing_num_workers": None, **keys}
    model_args, data_args, training_args, _, _ = get_train_args(args)
    loaded = load_tokenizer(model_args)
    tokenizer, processor = loaded["tokenizer"], loaded["processor"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, "sft", **loaded)["train_dataset"]
    rows = []
    for row in dataset:
        audios = row["audios"] or []
        inputs = template.mm_plugin.get_mm_inputs([], [], audios, [0], [0], [len(audios)], [row["input_ids"]],
                                                  processor)
        outputs = {"input_features": summary(inputs["input_features"]),
                   "feature_attention_mask": inputs["feature_attention_mask"].sum(-1).tolist()}
        rows.append({"input_ids": row["input_ids"], "labels": row["labels"],
                     "audios": [str(Path(audio).relative_to(demo_dir)) for audio in audios], "processor": outputs})
    return {"args": keys, "feature_extractor": type(processor.feature_extractor).__name__, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", default="/work/shared/data/llamafactory-demo")
    parser.add_argument("--torchaudio-dir", required=True)
    parser.add_argument("--tf-python", default="/work/main/.venv/bin/python")
    opts = parser.parse_args()
    torchaudio_version = install_torchaudio(opts.torchaudio_dir)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / FAMILY
        build_model(opts.tf_python, model_dir)
        result = run_case(model_dir, opts.demo_dir, Path(tmp) / "out")
    import llamafactory
    import transformers

    result["resample_probes"] = resample_probes()
    result["made_with"] = {"llamafactory": llamafactory.__version__, "transformers": transformers.__version__,
                           "torchaudio": f"{torchaudio_version} (resample; load = FFmpeg through PyAV)"}
    path = OUT_DIR / f"{FAMILY}_audio.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path.relative_to(ROOT)} ({len(result['rows'])} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
