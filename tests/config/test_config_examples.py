"""Every shipped example validates, LLaMA-Factory's examples validate unchanged (model path swapped for a
local folder), and check_implemented names what is not built yet."""

import shutil
from pathlib import Path

import pytest

from tuneforge.config import check_implemented, load_config, make_config
from tuneforge.errors import ConfigError
from shared_paths import LF_EXAMPLES

REPO = Path(__file__).resolve().parents[2]
OUR_EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
LF_EXAMPLES_DIR = LF_EXAMPLES
# Files under LLaMA-Factory's examples/ that are not its training/inference configs, or belong to its newer
# options that issue 17 (LLaMA-Factory main's examples) brings in. Each is named with the reason.
NOT_TRAINING_CONFIGS = {
    "accelerate": "accelerate launcher configs (passed to `accelerate launch`, not to the trainer)",
    "ktransformers/accelerate": "accelerate launcher configs",
    "extras/multi_tokens/tokens_cfg.yaml": "a new_special_tokens_config description file, not a run config",
}
LATER_EXAMPLES = {
    "v1": "LLaMA-Factory v1's nested config format (issue 17)",
    "megatron": "Megatron-Core training (issue 17)",
    "megatron_bridge": "Megatron-Bridge training (issue 17)",
    "ktransformers/train_lora": "KTransformers options of LLaMA-Factory main (issue 17)",
}


def _excluded(path: Path) -> bool:
    relative = path.relative_to(LF_EXAMPLES_DIR).as_posix()
    return any(relative == prefix or relative.startswith(prefix + "/")
               for prefix in (*NOT_TRAINING_CONFIGS, *LATER_EXAMPLES))


LF_EXAMPLES = (sorted(path for path in LF_EXAMPLES_DIR.rglob("*.yaml") if not _excluded(path))
               if LF_EXAMPLES_DIR.is_dir() else [])


def test_there_are_examples():
    assert {path.name for path in OUR_EXAMPLES} >= {"sft_lora.yaml", "pt.yaml", "preprocess.yaml"}


@pytest.mark.parametrize("path", OUR_EXAMPLES, ids=lambda path: path.name)
def test_our_examples_validate(path, monkeypatch):
    monkeypatch.chdir(REPO)  # their paths are relative to the repository root
    cfg = load_config(str(path))
    assert cfg.data.dataset_dir == "src/tuneforge/demo/data"
    assert cfg.model.model_name_or_path == "demo_out/model"


def test_preprocess_example_needs_nothing_unimplemented(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config(str(REPO / "examples" / "preprocess.yaml"))
    check_implemented(cfg)
    assert cfg.data.tokenized_path == "demo_out/tokenized/sft"


@pytest.fixture
def lf_repo_root(tmp_path, monkeypatch):
    """A working directory laid out like LLaMA-Factory's repository (its YAMLs name examples/deepspeed/...)."""
    shutil.copytree(LF_EXAMPLES_DIR / "deepspeed", tmp_path / "examples" / "deepspeed")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    return tmp_path


@pytest.mark.skipif(not LF_EXAMPLES, reason="LLaMA-Factory examples not available")
@pytest.mark.parametrize("path", LF_EXAMPLES, ids=lambda path: str(path.relative_to(LF_EXAMPLES_DIR)))
def test_lf_examples_validate_unchanged(path, lf_repo_root):
    cfg = load_config(str(path), [f"model_name_or_path={lf_repo_root / 'model'}"])
    assert cfg.training_args is not None
    if cfg.method.stage == "pt":
        assert cfg.data.packing is True
    if cfg.method.finetuning_type == "lora":
        assert cfg.lora.lora_alpha == 2 * cfg.lora.lora_rank


@pytest.mark.skipif(not LF_EXAMPLES, reason="LLaMA-Factory examples not available")
def test_lf_qlora_example_passes_check_implemented(lf_repo_root):
    path = LF_EXAMPLES_DIR / "train_qlora" / "qwen3_lora_sft_otfq.yaml"
    cfg = load_config(str(path))
    assert (cfg.quantization.quantization_bit, cfg.quantization.quantization_method, cfg.quantization.quantization_type) == (4, "bnb", "nf4")
    check_implemented(cfg)


def test_check_implemented_ignores_defaults_and_implemented_keys():
    check_implemented(make_config({"lora_rank": 8, "lora_target": "all", "finetuning_type": "lora",
                                   "dataset": "a", "template": "qwen", "stage": "pt", "learning_rate": 1e-3}))
    with pytest.raises(ConfigError, match=r"^not implemented yet: use_mca \(set to True; remove it or set it back "
                                          r"to False\)$"):
        check_implemented(make_config({"use_mca": True}))
