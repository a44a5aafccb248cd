"""Regenerate tests/fixtures/mm/intern_vl_video.json: LLaMA-Factory 0.9.5's tokenized `mllm_video_demo` for InternVL.

Run in two steps, as tools/lf_mm_fixtures/intern_vl.py (whose processor patch this script reuses):

    .venv/bin/python -m tuneforge.testing.tiny_vl_intern /tmp/tiny_intern_vl
    /work/lfvenv/bin/python tools/lf_mm_fixtures/intern_vl_video.py --model-dir /tmp/tiny_intern_vl \
        --demo-dir ../shared/data/llamafactory-demo

LLaMA-Factory's own argument parser, load_tokenizer, template and get_dataset tokenize mllm_video_demo; its
InternVL plugin's get_mm_inputs gives each row's model inputs (shape, dtype and checksums are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from intern_vl import FIXTURES, patch_internvl_processor, summaries

KEYS = dict(template="intern_vl", cutoff_len=2048, video_fps=1.0, video_maxlen=4, video_max_pixels=128 * 128)


def main() -> None:
    parser = argparse.ArgumentParser(description="LLaMA-Factory video fixture for InternVL")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--demo-dir", required=True, help="LLaMA-Factory's data folder (holds mllm_video_demo)")
    opts = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    patch_internvl_processor()
    import llamafactory
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    tmp = Path(tempfile.mkdtemp(prefix="lf_mm_intern_vl_video_"))
    try:
        args = {"model_name_or_path": opts.model_dir, "dataset": "mllm_video_demo", "dataset_dir": opts.demo_dir,
                "stage": "sft", "finetuning_type": "lora", "do_train": True, "output_dir": str(tmp),
                "overwrite_cache": True, "report_to": "none", **KEYS}
        model_args, data_args, training_args, _, _ = get_train_args(args)
        module = load_tokenizer(model_args)
        template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
        dataset = get_dataset(template, model_args, data_args, training_args, "sft", **module)["train_dataset"]
        rows = []
        for row in dataset:
            videos = row["videos"] or []
            inputs = template.mm_plugin.get_mm_inputs([], videos, [], [0], [len(videos)], [0], [row["input_ids"]],
                                                      module["processor"])
            rows.append({"input_ids": row["input_ids"], "labels": row["labels"],
                         "videos": [os.path.basename(path) for path in videos], "mm_inputs": summaries(inputs)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = FIXTURES / "intern_vl_video.json"
    result = {"llamafactory": llamafactory.__version__, "dataset": "mllm_video_demo", "args": KEYS, "rows": rows}
    path.write_text(json.dumps(result, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
