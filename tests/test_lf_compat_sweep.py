"""tools/lf_compat_sweep.py in its cheap mode (load + validate + pre-weights checks, no training) over
LLaMA-Factory main's example configs: no traceback, and nothing refused for a reason other than missing
hardware except the explained allowlist. The full 1-step sweep is run by hand; its table is
docs/lf_compat_sweep.md."""

import importlib.util
import sys
from pathlib import Path

import pytest

from shared_paths import LF_EXAMPLES

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not LF_EXAMPLES.is_dir(), reason="LLaMA-Factory examples not available")

# Configs refused for a reason other than this machine's hardware, and why that is right (or whose work it is).
ALLOWED_REFUSALS = {
    "train_lora/qwen3_lora_sft_ray.yaml": "Ray (ray_num_workers) is another part of issue 17, on its own branch",
    "extras/asft/llama2_full_asft.yaml": "names dataset `med`, which LLaMA-Factory's demo data does not define "
                                         "(LLaMA-Factory refuses it the same way)",
    "extras/asft/qwen2_full_asft.yaml": "names dataset `math`, which LLaMA-Factory's demo data does not define",
    "ascend/qwen3_full_sft_fsdp2.yaml": "use_v1_kernels: LLaMA-Factory v1's kernel plugins, for Ascend NPUs (not "
                                        "built)",
    "ascend/qwen3moe_full_sft_fsdp.yaml": "use_v1_kernels, as above",
}


def _load_tool():
    spec = importlib.util.spec_from_file_location("lf_compat_sweep", REPO_ROOT / "tools" / "lf_compat_sweep.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(tiny_llama_dir, tiny_qwen2_dir, tmp_path_factory):
    tool = _load_tool()
    scratch = tmp_path_factory.mktemp("lf_sweep")
    found = tool.sweep(LF_EXAMPLES, "plan", scratch, models={"llama": tiny_llama_dir, "qwen2": tiny_qwen2_dir})
    return {result.config: result for result in found}


def test_no_config_gives_a_traceback(results):
    tracebacks = {name: result.detail for name, result in results.items() if result.outcome == "traceback"}
    assert tracebacks == {}


def test_refusals_are_for_hardware_or_explained(results):
    refused = {name: result.detail for name, result in results.items() if result.outcome == "refused (other)"}
    assert set(refused) <= set(ALLOWED_REFUSALS), {name: refused[name] for name in set(refused) - set(ALLOWED_REFUSALS)}


def test_the_newer_methods_plan_and_fp8_is_refused_for_the_hardware(results):
    for name in ("extras/oft/llama3_oft_sft.yaml", "extras/qoft/llama3_oft_sft_bnb_npu.yaml",
                 "extras/mod/llama3_full_sft.yaml", "extras/muon/qwen2_full_sft.yaml", "extras/dft/qwen2_full_sft.yaml"):
        assert results[name].outcome == "ok", (name, results[name].detail)
    fp8 = results["extras/fp8/llama3_fp8_deepspeed_sft.yaml"]
    assert fp8.outcome == "refused (hardware)" and "CUDA compute capability >= 8.9" in fp8.detail
    assert results["train_lora/qwen3vl_lora_sft.yaml"].outcome == "vision-language"
    assert results["v1/train_lora/train_lora_sft.yaml"].outcome == "not swept"
    assert sum(result.outcome == "ok" for result in results.values()) >= 30
