"""Multimodal preprocessing benchmark: mllm_demo repeated to 2,000 rows, tuneforge vs LLaMA-Factory 0.9.5 (not a test).

    nice -n 5 python bench/mm_preprocess.py [--rows 2000] [--collate-rows 400]

What each side does with images (the design question of issue 16, Deliver 5):
- tuneforge counts each image's vision tokens from its file header (data/media/images.py regularized_size) at
  preprocessing time and processes pixels lazily, in the collator, batch by batch (plugin.batch_inputs); the
  tokenized dataset holds ids and image paths only, never pixel tensors.
- LLaMA-Factory 0.9.5 runs the model's image processor on every image at preprocessing time (to learn the
  token count: mm_plugin.process_messages -> _get_mm_inputs), drops the pixels, and runs it again in its
  collator.
So two figures per side: preprocessing (tokenized rows/s, images/s, peak RSS of the process tree) and, for
tuneforge, the collator's pixel throughput (images/s through plugin.batch_inputs), which is work LLaMA-Factory
does in both places.

Families: LLaMA-Factory 0.9.5 cannot load Qwen2-VL's processor on this machine (transformers 4.57.1's
Qwen2VLProcessor always builds a video processor, which needs torchvision; the venv has none): its get_dataset
fails with "Processor was not found". The run records that error. LLaMA-Factory's side is therefore measured on
a tiny LLaVA-1.5 directory (CLIP image processor: 336x336, 576 image tokens, no torchvision needed), built in
its own venv; tuneforge's side on a tiny Qwen2-VL (this branch has no LLaVA plugin yet). Token counts per
image differ (Qwen2-VL: about 80 for these 300x170 images; LLaVA: 576), so compare images/s and RSS, with the
families named. Each side runs in a fresh subprocess (imports included), timed by wall clock; memory by psutil
polling every 50 ms. Results: bench/results/mm_preprocess.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work" / "mm"
# LF_DEMO_DIR, else the shared folder beside the checkout (main: ../shared; a worktree under /work/wt: ../../shared).
DEMO = next((Path(path) for path in (os.environ.get("LF_DEMO_DIR", ""),
                                     ROOT.parent / "shared" / "data" / "llamafactory-demo",
                                     ROOT.parent.parent / "shared" / "data" / "llamafactory-demo")
             if path and (Path(path) / "mllm_demo.json").is_file()), ROOT.parent / "shared")
LF_VENV = Path(os.environ.get("LF_VENV", "/work/lfvenv"))
DATASET = "mllm_bench"


# ------------------------------------------------------------------------------------------------ inputs


def prepare_data(rows: int) -> tuple[Path, int]:
    """dataset_dir holding mllm_demo's rows repeated to `rows` rows, and the number of images in it."""
    data_dir = WORK / f"data_{rows}"
    demo = json.loads((DEMO / "mllm_demo.json").read_text())
    repeated = [demo[i % len(demo)] for i in range(rows)]
    data_dir.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "mllm_demo_data").exists():
        shutil.copytree(DEMO / "mllm_demo_data", data_dir / "mllm_demo_data")
    (data_dir / "mllm_bench.json").write_text(json.dumps(repeated))
    info = json.loads((DEMO / "dataset_info.json").read_text())["mllm_demo"]
    (data_dir / "dataset_info.json").write_text(json.dumps({DATASET: {**info, "file_name": "mllm_bench.json"}}))
    return data_dir, sum(len(row["images"]) for row in repeated)


def build_models() -> tuple[Path, Path]:
    """(tiny Qwen2-VL for tuneforge, tiny LLaVA for LLaMA-Factory), built once."""
    qwen = WORK / "tiny_qwen2_vl"
    if not (qwen / "preprocessor_config.json").exists():
        sys.path.insert(0, str(ROOT / "src"))
        from tuneforge.testing.tiny_vl_model import build_tiny_qwen2_vl

        build_tiny_qwen2_vl(qwen)
    llava = WORK / "tiny_llava_lf"
    if not (llava / "preprocessor_config.json").exists():
        subprocess.run([str(LF_VENV / "bin" / "python"), __file__, "--build-llava", str(qwen), str(llava)], check=True)
    return qwen, llava


def lf_copy_of(qwen: Path) -> Path:
    """The tiny Qwen2-VL with a tokenizer_config.json transformers 4.57 reads (5.x names the class
    TokenizersBackend), so LLaMA-Factory's attempt fails where it really fails, at the processor."""
    copy = WORK / "tiny_qwen2_vl_lf"
    if not copy.exists():
        shutil.copytree(qwen, copy)
        config = json.loads((copy / "tokenizer_config.json").read_text())
        config["tokenizer_class"] = "Qwen2TokenizerFast"
        (copy / "tokenizer_config.json").write_text(json.dumps(config))
    return copy


def build_llava(tokenizer_dir: str, out: str) -> None:
    """Runs in LLaMA-Factory's venv (transformers 4.57.1): a tiny LLaVA-1.5 config + processor."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaProcessor,
                              PreTrainedTokenizerFast)

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{tokenizer_dir}/tokenizer.json", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    processor.save_pretrained(out)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=336, patch_size=14)
    LlavaConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                image_token_index=tokenizer.convert_tokens_to_ids("<image>")).save_pretrained(out)


# ---------------------------------------------------------------------------------------- child runners


def run_ours(spec: dict) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    from tuneforge.config import make_config
    from tuneforge.data.collator import SFTCollator
    from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template

    cfg = make_config({"model_name_or_path": spec["model"], "stage": "sft", "do_train": True,
                       "finetuning_type": "lora", "dataset": DATASET, "dataset_dir": spec["data_dir"],
                       "media_dir": spec["data_dir"], "template": "qwen2_vl", "cutoff_len": 2048,
                       "cache_dir": spec["cache_dir"], "overwrite_cache": True, "output_dir": spec["output_dir"],
                       "tokenized_path": spec["tokenized_path"], "preprocessing_num_workers": 1})
    import datasets  # noqa: F401  - imported before the clock starts, as LLaMA-Factory's argument parsing does
    import transformers  # noqa: F401

    start = time.time()
    tokenizer, template = load_tokenizer_and_template(cfg)
    dataset = get_dataset(cfg, tokenizer, template, "sft").train_dataset
    preprocess_s = time.time() - start
    # The lazy half: pixels are processed in the collator, batch by batch, during training.
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)
    rows = [dataset[i] for i in range(spec["collate_rows"])]
    images = sum(len(row["images"] or []) for row in rows)
    start = time.time()
    for first in range(0, len(rows), 8):
        collator(rows[first:first + 8])
    collate_s = time.time() - start
    return {"rows": len(dataset), "preprocess_s": preprocess_s, "collate_images": images, "collate_s": collate_s}


def run_lf(spec: dict) -> dict:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args({
        "model_name_or_path": spec["model"], "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "dataset": DATASET, "dataset_dir": spec["data_dir"], "media_dir": spec["data_dir"],
        "template": spec["template"], "cutoff_len": 2048, "cache_dir": spec["cache_dir"], "overwrite_cache": True,
        "output_dir": spec["output_dir"], "tokenized_path": spec["tokenized_path"], "report_to": "none",
        "preprocessing_num_workers": 1})
    start = time.time()
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    try:
        module = get_dataset(template, model_args, data_args, training_args, "sft", **tokenizer_module)
    except SystemExit:  # 0.9.5 exits after saving a tokenized_path dataset
        from datasets import load_from_disk

        module = {"train_dataset": load_from_disk(spec["tokenized_path"])["train"]}
    return {"rows": len(module["train_dataset"]), "preprocess_s": time.time() - start}


# -------------------------------------------------------------------------------------------- measuring


def measure(python: str, side: str, spec: dict) -> dict:
    """Run one side in a fresh subprocess: its result, wall time and peak RSS of its process tree."""
    import psutil

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
               DISABLE_VERSION_CHECK="1", HF_DATASETS_CACHE=spec["cache_dir"], TUNEFORGE_CACHE=spec["cache_dir"])
    log = Path(spec["output_dir"]) / f"{side}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    process = psutil.Popen([python, __file__, f"--run-{side}", json.dumps(spec)], env=env,
                           stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    peak = 0
    while process.poll() is None:
        rss = 0
        try:
            for member in [process] + process.children(recursive=True):
                rss += member.memory_info().rss
        except psutil.Error:
            pass
        peak = max(peak, rss)
        time.sleep(0.05)
    wall = time.time() - start
    output = process.stdout.read() if process.stdout else ""
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        tail = log.read_text(errors="replace").strip().splitlines()
        return {"error": next((line for line in reversed(tail) if "Error" in line), tail[-1] if tail else "?"),
                "wall_s": wall}
    return {**json.loads(lines[-1][len("RESULT "):]), "wall_s": wall, "peak_rss_mb": peak / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--collate-rows", type=int, default=400)
    parser.add_argument("--run-ours")
    parser.add_argument("--run-lf")
    parser.add_argument("--build-llava", nargs=2)
    args = parser.parse_args()
    if args.build_llava:
        build_llava(*args.build_llava)
        return 0
    for side, runner in (("ours", run_ours), ("lf", run_lf)):
        spec_text = getattr(args, f"run_{side}")
        if spec_text:
            print("RESULT " + json.dumps(runner(json.loads(spec_text))), flush=True)
            return 0

    data_dir, images = prepare_data(args.rows)
    qwen, llava = build_models()
    runs = {}
    for side, python, model, template in (("ours_qwen2_vl", sys.executable, qwen, "qwen2_vl"),
                                          ("lf_qwen2_vl", str(LF_VENV / "bin" / "python"), lf_copy_of(qwen),
                                           "qwen2_vl"),
                                          ("lf_llava", str(LF_VENV / "bin" / "python"), llava, "llava")):
        out = WORK / "runs" / side
        shutil.rmtree(out, ignore_errors=True)
        spec = {"model": str(model), "template": template, "data_dir": str(data_dir), "cache_dir": str(out / "cache"),
                "output_dir": str(out), "tokenized_path": str(out / "tokenized"), "collate_rows": args.collate_rows}
        result = measure(python, "ours" if side.startswith("ours") else "lf", spec)
        if "error" not in result:
            result["images_per_s"] = images / result["wall_s"]
            result["preprocess_images_per_s"] = images / result["preprocess_s"]
            if "collate_s" in result:
                result["collate_images_per_s"] = result["collate_images"] / result["collate_s"]
        runs[side] = result
        print(side, json.dumps(result), flush=True)
    ours, lf = runs["ours_qwen2_vl"], runs["lf_llava"]
    summary = {"rows": args.rows, "images": images, "machine": "2 shared CPU cores (other jobs running), nice -n 5",
               "runs": runs}
    if "error" not in ours and "error" not in lf:
        summary["ratios_ours_qwen2_vl_vs_lf_llava"] = {
            "images_per_s_end_to_end": ours["images_per_s"] / lf["images_per_s"],
            "images_per_s_preprocess": ours["preprocess_images_per_s"] / lf["preprocess_images_per_s"],
            "peak_rss": ours["peak_rss_mb"] / lf["peak_rss_mb"]}
    results = ROOT / "bench" / "results" / "mm_preprocess.json"
    results.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary.get("ratios_ours_qwen2_vl_vs_lf_llava"), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
