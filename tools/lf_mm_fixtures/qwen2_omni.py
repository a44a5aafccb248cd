"""Make the Qwen2.5-Omni thinker token-parity fixtures with LLaMA-Factory 0.9.5's own code
(tests/fixtures/mm/qwen2_omni_<medium>.json).

Run with LLaMA-Factory's venv, a real torchaudio (see qwen2_audio.py) and a torchvision for the Qwen video
processor (see tools/lf_mm_fixtures/qwen.py):

    /work/lfvenv/bin/python tools/lf_mm_fixtures/qwen2_omni.py --torchaudio-dir /tmp/lf_ta --torchvision-dir /tmp/lf_tv

1. builds the tiny thinker with tuneforge's builder (tuneforge.testing.tiny_audio_qwen2_omni, --tf-python);
2. per case runs LF's load_tokenizer (AutoProcessor: Qwen2_5OmniProcessor), the qwen2_omni template and
   get_dataset, and LF's mm plugin get_mm_inputs per row;
3. writes input_ids, labels and the processor outputs (shapes, sums, grids, feature_attention_mask sums,
   video_second_per_grid) per case.
Cases: audio (mllm_audio_demo), image (mllm_demo), video_audio (mllm_video_audio_demo with use_audio_in_video:
true, each video's sound interleaved with its frames).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qwen2_audio import install_torchaudio, summary  # noqa: E402  (the sibling script's LF audio setup)

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "tests" / "fixtures" / "mm"
FAMILY, TEMPLATE = "qwen2_omni", "qwen2_omni"
# Small video limits keep the tiny tensors small and exercise the keys.
VIDEO_KEYS = {"video_fps": 1.0, "video_maxlen": 6, "video_max_pixels": 128 * 128}
CASES = {
    "audio": {"dataset": "mllm_audio_demo"},
    "image": {"dataset": "mllm_demo", "image_max_pixels": 256 * 256},
    "video_audio": {"dataset": "mllm_video_audio_demo", "use_audio_in_video": True, **VIDEO_KEYS},
}


def build_model(tf_python: str, model_dir: Path) -> None:
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r})\n"
            "from tuneforge.testing.tiny_audio_qwen2_omni import build_tiny_qwen2_5_omni_thinker\n"
            f"build_tiny_qwen2_5_omni_thinker({str(model_dir)!r})")
    subprocess.run([tf_python, "-c", code], check=True)


def shim_torchvision(folder: str) -> None:
    sys.path.insert(0, folder)
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")


def run_case(medium: str, model_dir: Path, demo_dir: str, out_root: Path) -> dict:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    keys = {"template": TEMPLATE, "cutoff_len": 8192, **CASES[medium]}
    args = {"model_name_or_path": str(model_dir), "dataset_dir": demo_dir, "finetuning_type": "lora",
            "do_train": True, "output_dir": str(out_root / medium), "overwrite_cache": True, "report_to": "none",
            "preprocessing_num_workers": None, **keys}
    model_args, data_args, training_args, _, _ = get_train_args(args)
    loaded = load_tokenizer(model_args)
    tokenizer, processor = loaded["tokenizer"], loaded["processor"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, "sft", **loaded)["train_dataset"]
    rows = []
    for row in dataset:
        images, videos, audios = row["images"] or [], row["videos"] or [], row["audios"] or []
        inputs = template.mm_plugin.get_mm_inputs(images, videos, audios, [len(images)], [len(videos)],
                                                  [len(audios)], [row["input_ids"]], processor)
        outputs = {}
        for key, value in inputs.items():
            if key in ("pixel_values", "pixel_values_videos", "input_features"):
                outputs[key] = summary(value)
            elif key in ("image_grid_thw", "video_grid_thw", "video_second_per_grid"):
                outputs[key] = value.tolist()
            elif key == "feature_attention_mask":
                outputs[key] = value.sum(-1).tolist()
        rows.append({"input_ids": row["input_ids"], "labels": row["labels"], "processor": outputs,
                     "media": [str(Path(item).relative_to(demo_dir)) for item in images + videos + audios]})
    return {"args": keys, "processor": type(processor).__name__, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", default="/work/shared/data/llamafactory-demo")
    parser.add_argument("--torchaudio-dir", required=True)
    parser.add_argument("--torchvision-dir", required=True)
    parser.add_argument("--tf-python", default="/work/main/.venv/bin/python")
    parser.add_argument("--only", choices=sorted(CASES))
    opts = parser.parse_args()
    shim_torchvision(opts.torchvision_dir)
    torchaudio_version = install_torchaudio(opts.torchaudio_dir)
    import llamafactory
    import transformers

    made_with = {"llamafactory": llamafactory.__version__, "transformers": transformers.__version__,
                 "torchaudio": f"{torchaudio_version} (resample; load = FFmpeg through PyAV)"}
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / FAMILY
        build_model(opts.tf_python, model_dir)
        for medium in [opts.only] if opts.only else CASES:
            result = run_case(medium, model_dir, opts.demo_dir, Path(tmp) / "out")
            result["made_with"] = made_with
            path = OUT_DIR / f"{FAMILY}_{medium}.json"
            path.write_text(json.dumps(result, indent=1))
            print(f"wrote {path.relative_to(ROOT)} ({len(result['rows'])} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
