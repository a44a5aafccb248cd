"""bench/gpu_suite.py dry run (what bench/gpu_suite.sh runs without a GPU): every case planned, every YAML
valid, table + JSON written, exit 0."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import yaml

from tuneforge.config import load_config
from tuneforge.validate import validate_config

ROOT = Path(__file__).resolve().parents[1]
CASES = ("sdpa", "fa2", "liger", "qlora_4bit", "adamw_8bit", "zero2", "zero3", "vllm_chat")


def _suite_module(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "bench" / "gpu_suite.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_suite", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_dry_run_plans_and_validates_every_case(tmp_path, monkeypatch, capsys):
    suite = _suite_module(monkeypatch)
    monkeypatch.setattr(suite, "cuda_available", lambda: False)  # the same plan on a machine with a GPU
    monkeypatch.delenv("GPU_SUITE_MODEL", raising=False)
    out = tmp_path / "result.json"

    assert suite.main(["--dry-run", "--work", str(tmp_path / "work"), "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    for case in CASES:
        assert f"plan: tiny/{case} " in printed
        assert f"\ntiny/{case} " in printed  # its table row
    assert "skipped: no CUDA device" in printed
    result = json.loads(out.read_text())
    assert result["dry_run"] is True and result["cuda"] is False
    tiny = {row["case"]: row for row in result["results"] if row["case"].startswith("tiny/")}
    assert sorted(tiny) == sorted(f"tiny/{case}" for case in CASES)
    assert {row["status"] for row in result["results"]} == {"skipped: no CUDA device"}
    configs = {}
    for row in result["results"]:
        configs[row["case"]] = cfg = load_config(row["yaml"])
        validate_config(cfg)
    zero3 = yaml.safe_load(Path(tiny["tiny/zero3"]["yaml"]).read_text())["deepspeed"]
    assert configs["tiny/zero3"].train.deepspeed == zero3
    assert json.loads(Path(zero3).read_text())["zero_optimization"]["stage"] == 3
    assert configs["tiny/qlora_4bit"].quantization.quantization_bit == 4
    assert configs["tiny/fa2"].model.flash_attn == "fa2"
    assert configs["tiny/liger"].model.enable_liger_kernel is True
    assert configs["tiny/adamw_8bit"].train.optim == "adamw_8bit"
    assert configs["tiny/vllm_chat"].infer.infer_backend == "vllm"
    assert configs["tiny/sdpa"].train.max_steps == 20


def test_shell_entry_point_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_suite.sh")]).returncode == 0


def test_peak_hook_records_the_largest_device_peak_at_exit(tmp_path, monkeypatch):
    """The sitecustomize hook each run's processes load; CUDA faked, since only its bookkeeping is tested here."""
    suite = _suite_module(monkeypatch)
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(suite.PEAK_HOOK)
    fake_cuda = ("import torch; torch.cuda.is_initialized = lambda: True; torch.cuda.device_count = lambda: 2; "
                 "torch.cuda.max_memory_allocated = lambda i: [100, 300][i]")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "hook"), "GPU_SUITE_PEAK_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", fake_cuda], env=env, check=True, timeout=60)
    [peak_file] = tmp_path.glob("peak_*.json")
    assert json.loads(peak_file.read_text()) == {"peak_bytes": 300}
