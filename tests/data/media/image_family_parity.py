"""Shared by the image-family parity tests (test_llava.py, test_llava_next.py, test_pixtral.py, test_gemma3.py):
run our pipeline on LLaMA-Factory's `mllm_demo` for each case of the family's fixture
(tests/fixtures/mm/<family>_image.json, made by tools/lf_mm_fixtures/<family>.py with LLaMA-Factory 0.9.5) and
compare token ids, labels and the media inputs the model gets, row by row and for all rows as one batch.

A family test also trains its tiny model 3 steps with the vision tower frozen (`train_frozen_tower`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from shared_paths import LF_DEMO_DATA

from tuneforge.data.collator import SFTCollator
from tuneforge.data.media import RowMedia
from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template
from tuneforge.errors import DataError
from tuneforge.testing.media_summary import summarize_inputs
from tuneforge.testing.tiny_model import tiny_config

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mm"
needs_demo = pytest.mark.skipif(not (LF_DEMO_DATA / "mllm_demo.json").exists(),
                                reason="LLaMA-Factory demo data (mllm_demo) not found beside the repository")


def fixture_cases(family: str) -> dict:
    return json.loads((FIXTURES / f"{family}_image.json").read_text())["cases"]


def make_cfg(model_dir: Path, work_dir: Path, **values):
    settings = dict(model_name_or_path=str(model_dir), dataset="mllm_demo", dataset_dir=str(LF_DEMO_DATA),
                    stage="sft", do_train=True, finetuning_type="lora", output_dir=str(work_dir / "out"),
                    cache_dir=str(work_dir / "cache"), report_to="none", seed=42)
    settings.update(values)
    return tiny_config(**settings)


def our_rows(model_dir: Path, work_dir: Path, args: dict):
    cfg = make_cfg(model_dir, work_dir, **args)
    tokenizer, template = load_tokenizer_and_template(cfg)
    dataset = get_dataset(cfg, tokenizer, template, stage="sft").train_dataset
    return tokenizer, template.media_plugin, list(dataset)


def media_summary(plugin, rows: list[dict], pad_token_id: int) -> dict:
    """Our media inputs for these rows as one padded batch, summarized like the fixture (token type ids cut
    back to each row's length: LLaMA-Factory computes them before padding)."""
    lengths = [len(row["input_ids"]) for row in rows]
    input_ids = torch.full((len(rows), max(lengths)), pad_token_id)
    for i, row in enumerate(rows):
        input_ids[i, :lengths[i]] = torch.tensor(row["input_ids"])
    inputs = plugin.batch_inputs([RowMedia.of(row["images"]) for row in rows], input_ids)
    summary = summarize_inputs(inputs)
    if "token_type_ids" in summary:
        summary["token_type_ids"] = [ids[:length] for ids, length in zip(summary["token_type_ids"], lengths)]
    return summary


def media_matches(plugin, rows: list[dict], pad_token_id: int, expected: dict) -> bool:
    """True when our media inputs equal LLaMA-Factory's; False when cutoff_len cut an image's tokens, where
    we refuse the batch (LLaMA-Factory hands the model inputs it then fails on)."""
    try:
        ours = media_summary(plugin, rows, pad_token_id)
    except DataError as error:
        assert "cutoff_len cut through an image's tokens" in str(error)
        return False
    assert ours == expected
    return True


def assert_case_matches(model_dir: Path, work_dir: Path, case: dict) -> None:
    tokenizer, plugin, rows = our_rows(model_dir, work_dir, case["args"])
    expected = case["rows"]
    assert len(rows) == len(expected)
    compared = []
    for i, (row, want) in enumerate(zip(rows, expected)):
        assert row["input_ids"] == want["input_ids"], f"row {i}: input_ids differ"
        assert row["labels"] == want["labels"], f"row {i}: labels differ"
        assert [os.path.basename(image) for image in row["images"]] == want["images"]
        compared.append(media_matches(plugin, [row], tokenizer.pad_token_id, want["media"]))
    if all(compared):
        assert media_matches(plugin, rows, tokenizer.pad_token_id, case["batch"])
    else:  # only a short cutoff_len cuts images
        assert case["args"]["cutoff_len"] < 1024


# ------------------------------------------------------------------------------------------------ training


def train_frozen_tower(model_dir: Path, work_dir: Path, template: str) -> tuple[list, set]:
    """Full SFT for 3 steps on one fixed batch (the first 2 mllm_demo rows, 3 images) with freeze_vision_tower; returns
    (losses, names of the saved weights that changed). The checkpoint keeps the families' original layout:
    vision_tower.*, multi_modal_projector.*, language_model.*."""
    import tuneforge.train.stages.sft as sft_recipe

    output_dir = work_dir / "train"
    cfg = make_cfg(model_dir, work_dir, template=template, cutoff_len=1024, finetuning_type="full",
                   freeze_vision_tower=True, output_dir=str(output_dir), per_device_train_batch_size=2, max_samples=2,
                   max_steps=3, logging_steps=1, save_steps=100, learning_rate=5e-3,
                   disable_gradient_checkpointing=True)
    sft_recipe.run_sft(cfg)
    losses = [json.loads(line)["loss"] for line in open(output_dir / "trainer_log.jsonl") if '"loss"' in line]
    before = load_file(str(model_dir / "model.safetensors"))
    after = load_file(str(output_dir / "model.safetensors"))
    assert set(before) == set(after)
    assert any(name.startswith("vision_tower.") for name in before)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    return losses, changed


def collate(tokenizer, plugin, rows: list[dict]) -> dict:
    return SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=plugin)(
        [{**row, "attention_mask": [1] * len(row["input_ids"])} for row in rows])


def assert_lora_skips_the_vision_tower(model_dir: Path, work_dir: Path, template: str) -> None:
    """lora_target: all wraps the language model's linear layers only; with freeze_vision_tower: false the
    vision tower's too (the projector never: freeze_multi_modal_projector defaults to true)."""
    from transformers import AutoModelForImageTextToText

    from tuneforge.model.adapters.lora import lora_targets

    model = AutoModelForImageTextToText.from_pretrained(str(model_dir))
    cfg = make_cfg(model_dir, work_dir, template=template, lora_target="all")
    targets = lora_targets(model, cfg.lora, cfg.method)
    assert targets and all(".language_model." in name for name in targets)
    unfrozen = make_cfg(model_dir, work_dir, template=template, lora_target="all", freeze_vision_tower=False)
    targets = lora_targets(model, unfrozen.lora, unfrozen.method)
    assert any(".vision_tower." in name for name in targets)
    assert not any("multi_modal_projector" in name for name in targets)
