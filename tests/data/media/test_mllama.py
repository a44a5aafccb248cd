"""Llama-3.2-Vision (Mllama): token parity with LLaMA-Factory 0.9.5 on mllm_demo, including the per-batch
cross_attention_mask.

The fixture (tests/fixtures/mm/mllama_image.json) was made by tools/lf_mm_fixtures/mllama.py: LLaMA-Factory's own
pipeline tokenized the demo rows on the tiny Mllama that `build_tiny_mllama` writes (seeded, so this module
rebuilds the very same model and tokenizer).
"""

import json
from pathlib import Path

import pytest
import torch

from tuneforge.data.collator import SFTCollator
from tuneforge.data.media import RowMedia, expand_media
from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template
from tuneforge.errors import DataError
from tuneforge.testing.tiny_model import tiny_config
from tuneforge.testing.tiny_vl_mllama import build_tiny_mllama

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mm"
EXPECTED = json.loads((FIXTURES / "mllama_image.json").read_text())
DEMO = FIXTURES / "mllm_demo"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_mllama")
    build_tiny_mllama(path)
    return path


def make_cfg(model_dir, tmp_path, **values):
    settings = dict(model_name_or_path=str(model_dir), dataset="mllm_demo", dataset_dir=str(DEMO),
                    template="mllama", cutoff_len=1024, stage="sft", do_train=True, finetuning_type="lora",
                    output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), report_to="none", seed=42)
    settings.update(values)
    return tiny_config(**settings)


def summary(tensor):
    as_float = tensor.double()
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", ""),
            "sum": float(as_float.sum()), "abs_sum": float(as_float.abs().sum())}


def assert_same(ours, want, name):
    got = summary(ours)
    assert (got["shape"], got["dtype"]) == (want["shape"], want["dtype"]), name
    # Pixels: LLaMA-Factory's numpy image processor (transformers 4.57) vs ours (5.x, PIL backend) agree up to
    # float32 rounding; the integer inputs (aspect ratios, masks) agree exactly.
    assert got["sum"] == pytest.approx(want["sum"], rel=1e-6, abs=1e-3), name
    assert got["abs_sum"] == pytest.approx(want["abs_sum"], rel=1e-6), name


@pytest.mark.parametrize("case", sorted(EXPECTED["cases"]))
def test_rows_and_model_inputs_match_llamafactory(model_dir, tmp_path, case):
    expected = EXPECTED["cases"][case]
    cfg = make_cfg(model_dir, tmp_path, **expected["args"])
    tokenizer, template = load_tokenizer_and_template(cfg)
    dataset = get_dataset(cfg, tokenizer, template, stage="sft").train_dataset
    assert len(dataset) == len(expected["rows"])
    plugin = template.media_plugin
    image_token = tokenizer.convert_tokens_to_ids("<|image|>")
    complete = []
    for row, want, want_inputs in zip(dataset, expected["rows"], expected["mm_inputs"]):
        assert row["input_ids"] == want["input_ids"]
        assert row["labels"] == want["labels"]
        assert [Path(path).name for path in row["images"]] == want["images"]
        media, ids = RowMedia.of(row["images"]), torch.tensor([row["input_ids"]])
        if row["input_ids"].count(image_token) < len(row["images"]):  # cutoff_len cut an <|image|> off
            with pytest.raises(DataError, match=r"holds 1 <\|image\|> token\(s\) but 2 image\(s\): cutoff_len"):
                plugin.batch_inputs([media], ids)
            continue
        complete.append(row)
        ours = plugin.batch_inputs([media], ids)
        assert sorted(ours) == sorted(want_inputs)
        for name in want_inputs:
            assert_same(ours[name], want_inputs[name], name)
    if len(complete) < len(dataset):
        return
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=plugin)
    batch = collator([dict(row) for row in dataset])
    want_batch = expected["batch_mm_inputs"]
    for name in ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask"):
        assert_same(batch[name], want_batch[name], name)
    # Every real position's mask is LLaMA-Factory's; padding positions may differ (see data/media/mllama.py).
    mask = batch["cross_attention_mask"]
    assert list(mask.shape) == want_batch["cross_attention_mask"]["shape"]
    real = mask * batch["attention_mask"][:, :, None, None]
    assert_same(real, expected["batch_cross_attention_mask_real"], "cross_attention_mask")


def test_image_token_and_mask_spans(model_dir, tmp_path):
    cfg = make_cfg(model_dir, tmp_path)
    tokenizer, template = load_tokenizer_and_template(cfg)
    image = str(DEMO / "mllm_demo_data" / "1.jpg")
    out = expand_media(template, [{"role": "user", "content": "<image>A<image>B"}], [image, image])
    assert out[0]["content"] == "<|image|>A<|image|>B"
    with pytest.raises(DataError, match="videos: the Llama-3.2-Vision models take only images"):
        expand_media(template, [{"role": "user", "content": "<video>"}], None, videos=["a.mp4"])
    # A text row beside an image row: its mask stays empty; the image row's <|image|> at 1 is seen from 1 on.
    ids = tokenizer.convert_tokens_to_ids
    rows = torch.tensor([[5, ids("<|image|>"), 7, 8], [5, 6, 7, 8]])
    inputs = template.media_plugin.batch_inputs([RowMedia.of([image]), RowMedia.of()], rows)
    assert inputs["cross_attention_mask"][:, :, 0, 0].tolist() == [[0, 1, 1, 1], [0, 0, 0, 0]]
    assert inputs["pixel_values"].shape[:3] == (2, 1, 4)


# ------------------------------------------------------------------------------------------- LoRA


@pytest.mark.parametrize("freeze_vision_tower", [True, False])
def test_lora_skips_the_vision_tower_unless_asked(model_dir, tmp_path, freeze_vision_tower):
    from tuneforge.model.loader import load_model

    cfg = make_cfg(model_dir, tmp_path, lora_target="all", freeze_vision_tower=freeze_vision_tower)
    tokenizer, _ = load_tokenizer_and_template(cfg)
    model = load_model(cfg, tokenizer, is_trainable=True)
    wrapped = {name.split(".lora_A")[0] for name, _ in model.named_parameters() if ".lora_A." in name}
    assert any(".language_model." in name for name in wrapped)
    assert not any("multi_modal_projector" in name for name in wrapped)  # the projector never gets LoRA
    assert any(".vision_model." in name for name in wrapped) == (not freeze_vision_tower)


# ------------------------------------------------------------------------------------------- training


def test_full_sft_on_images_lowers_the_loss_and_keeps_the_vision_tower_frozen(model_dir, tmp_path):
    """3 steps on one fixed batch (the first 2 demo rows); freeze_vision_tower / freeze_multi_modal_projector default
    on. Layer 1 is a cross-attention layer: it trains with the language model."""
    import tuneforge.train.stages.sft as sft_recipe
    from safetensors.torch import load_file

    output_dir = tmp_path / "full"
    cfg = make_cfg(model_dir, tmp_path, finetuning_type="full", output_dir=str(output_dir), max_steps=3,
                   max_samples=2, per_device_train_batch_size=2, logging_steps=1, save_steps=100, learning_rate=2e-3,
                   disable_gradient_checkpointing=True)
    sft_recipe.run_sft(cfg)
    losses = [json.loads(line)["loss"] for line in open(output_dir / "trainer_log.jsonl") if '"loss"' in line]
    assert len(losses) == 3 and losses[2] < losses[0], losses
    before, after = load_file(model_dir / "model.safetensors"), load_file(output_dir / "model.safetensors")
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    # Saved in the checkpoint's own layout: vision_model.*, multi_modal_projector.*, language_model.*
    frozen = {name for name in before if name.startswith(("vision_model.", "multi_modal_projector."))}
    assert frozen and frozen.isdisjoint(changed)
    assert changed == set(before) - frozen
    assert any(".cross_attn." in name for name in changed)  # the images reached the language model


def test_keys_of_other_families_are_refused(model_dir, tmp_path):
    cfg = make_cfg(model_dir, tmp_path, crop_to_patches=True)
    _, template = load_tokenizer_and_template(cfg)
    assert template.media_plugin is None
    with pytest.raises(DataError, match=r"crop_to_patches: the Llama-3.2-Vision models do not use it .*remove "
                                        r"`crop_to_patches: true`"):
        expand_media(template, [{"role": "user", "content": "<image>"}], ["x.png"])


def test_the_model_sees_the_image(model_dir, tmp_path):
    """The collator's inputs fit the model, and another image (same token count) changes the logits."""
    from transformers import AutoModelForImageTextToText

    cfg = make_cfg(model_dir, tmp_path, max_samples=2)
    tokenizer, template = load_tokenizer_and_template(cfg)
    row = dict(get_dataset(cfg, tokenizer, template, stage="sft").train_dataset[1])  # one image: 2.jpg
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    logits = []
    for image in ("2.jpg", "3.jpg"):
        batch = collator([{**row, "images": [str(DEMO / "mllm_demo_data" / image)]}])
        with torch.no_grad():
            logits.append(model(**batch).logits)
    assert torch.isfinite(logits[0]).all() and not torch.allclose(logits[0], logits[1])
