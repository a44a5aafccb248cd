"""InternVL: token parity with LLaMA-Factory 0.9.5 on mllm_demo, model loading, freezing and a short training run.

The fixture (tests/fixtures/mm/intern_vl_image.json) was made by tools/lf_mm_fixtures/intern_vl.py: LLaMA-Factory's
own pipeline tokenized the demo rows on the tiny InternVL that `build_tiny_intern_vl` writes (seeded, so this
module rebuilds the very same model and tokenizer).
"""

import json
from pathlib import Path

import pytest
import torch

from shared_paths import LF_DEMO_DATA
from tuneforge.data.collator import SFTCollator
from tuneforge.data.media import RowMedia, expand_media
from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template
from tuneforge.errors import DataError
from tuneforge.testing.tiny_model import tiny_config
from tuneforge.testing.tiny_vl_intern import build_tiny_intern_vl

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mm"
EXPECTED = json.loads((FIXTURES / "intern_vl_image.json").read_text())
DEMO = FIXTURES / "mllm_demo"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_intern_vl")
    build_tiny_intern_vl(path)
    return path


def make_cfg(model_dir, tmp_path, **values):
    settings = dict(model_name_or_path=str(model_dir), dataset="mllm_demo", dataset_dir=str(DEMO),
                    template="intern_vl", cutoff_len=1024, stage="sft", do_train=True, finetuning_type="lora",
                    output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), report_to="none", seed=42)
    settings.update(values)
    return tiny_config(**settings)


def summary(tensor):
    as_float = tensor.double()
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", ""),
            "sum": float(as_float.sum()), "abs_sum": float(as_float.abs().sum())}


def assert_same_inputs(ours: dict, expected: dict):
    assert sorted(ours) == sorted(expected)
    for name, want in expected.items():
        got = summary(ours[name])
        assert (got["shape"], got["dtype"]) == (want["shape"], want["dtype"]), name
        # LLaMA-Factory's numpy image processor (transformers 4.57) vs ours (5.x, PIL backend): same pixels up to
        # float32 rounding in the normalisation.
        assert got["sum"] == pytest.approx(want["sum"], rel=1e-6, abs=1e-3), name
        assert got["abs_sum"] == pytest.approx(want["abs_sum"], rel=1e-6), name


@pytest.mark.parametrize("case", sorted(EXPECTED["cases"]))
def test_rows_and_pixels_match_llamafactory(model_dir, tmp_path, case):
    expected = EXPECTED["cases"][case]
    cfg = make_cfg(model_dir, tmp_path, **expected["args"])
    tokenizer, template = load_tokenizer_and_template(cfg)
    dataset = get_dataset(cfg, tokenizer, template, stage="sft").train_dataset
    assert len(dataset) == len(expected["rows"])
    plugin = template.media_plugin
    for row, want, want_inputs in zip(dataset, expected["rows"], expected["mm_inputs"]):
        assert row["input_ids"] == want["input_ids"]
        assert row["labels"] == want["labels"]
        assert [Path(path).name for path in row["images"]] == want["images"]
        media = RowMedia.of(row["images"])
        assert_same_inputs(plugin.batch_inputs([media], torch.tensor([row["input_ids"]])), want_inputs)
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=plugin)
    batch = collator([dict(row) for row in dataset])
    assert_same_inputs({"pixel_values": batch["pixel_values"]}, expected["batch_mm_inputs"])


def test_expansion_is_exact(model_dir, tmp_path):
    cfg = make_cfg(model_dir, tmp_path, crop_to_patches=True)
    _, template = load_tokenizer_and_template(cfg)
    image = str(DEMO / "mllm_demo_data" / "2.jpg")  # 300x199: a 3x2 grid of 56-pixel tiles + thumbnail
    out = expand_media(template, [{"role": "user", "content": "A <image> B"}], [image])
    assert out[0]["content"] == "A <img>" + "<IMG_CONTEXT>" * (4 * 7) + "</img> B"
    with pytest.raises(DataError, match=r"1 image\(s\) but 2 <image> placeholder\(s\)"):
        expand_media(template, [{"role": "user", "content": "<image><image>"}], [image])


def test_an_image_cut_by_cutoff_len_is_a_clear_error(model_dir, tmp_path):
    cfg = make_cfg(model_dir, tmp_path, crop_to_patches=True, cutoff_len=200)
    tokenizer, template = load_tokenizer_and_template(cfg)
    dataset = get_dataset(cfg, tokenizer, template, stage="sft").train_dataset
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)
    with pytest.raises(DataError, match=r"holds \d+ <IMG_CONTEXT> tokens but its images need 72: cutoff_len"):
        collator([dataset[0]])


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
    assert any(".vision_tower." in name for name in wrapped) == (not freeze_vision_tower)


# ------------------------------------------------------------------------------------------- training


def test_full_sft_on_images_lowers_the_loss_and_keeps_the_vision_tower_frozen(model_dir, tmp_path):
    """3 steps on one fixed batch (the first 2 demo rows); freeze_vision_tower / freeze_multi_modal_projector
    default on."""
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
    # Saved in the checkpoint's own layout: vision_tower.*, multi_modal_projector.*, language_model.*
    frozen = {name for name in before if name.startswith(("vision_tower.", "multi_modal_projector."))}
    assert frozen and frozen.isdisjoint(changed)
    assert changed == set(before) - frozen


def test_keys_of_other_families_are_refused(model_dir, tmp_path):
    cfg = make_cfg(model_dir, tmp_path, image_do_pan_and_scan=True)
    _, template = load_tokenizer_and_template(cfg)
    with pytest.raises(DataError, match=r"image_do_pan_and_scan: the InternVL models do not use it"):
        expand_media(template, [{"role": "user", "content": "<image>"}], ["x.png"])


def test_image_seq_length_without_processor_config_comes_from_config_json(model_dir, tmp_path):
    import shutil

    from tuneforge.data.media.intern_vl import processor_image_seq_length

    copy = tmp_path / "no_processor_config"
    shutil.copytree(model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["image_seq_length"] = 9
    (copy / "config.json").write_text(json.dumps(config))
    assert processor_image_seq_length(make_cfg(copy, tmp_path).model) == 4  # processor_config.json first
    (copy / "processor_config.json").unlink()
    assert processor_image_seq_length(make_cfg(copy, tmp_path).model) == 9


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


# ------------------------------------------------------------------------------------------ videos

VIDEO = json.loads((FIXTURES / "intern_vl_video.json").read_text())  # tools/lf_mm_fixtures/intern_vl_video.py


@pytest.mark.skipif(not LF_DEMO_DATA.is_dir(), reason="LLaMA-Factory demo data not present")
def test_video_rows_and_frames_match_llamafactory(model_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    cfg = make_cfg(model_dir, tmp_path, dataset="mllm_video_demo", dataset_dir=str(LF_DEMO_DATA), **VIDEO["args"])
    tokenizer, template = load_tokenizer_and_template(cfg)
    rows = get_dataset(cfg, tokenizer, template, stage="sft").train_dataset
    assert len(rows) == len(VIDEO["rows"]) == 3
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)
    for ours, expected in zip(rows, VIDEO["rows"]):
        assert ours["input_ids"] == expected["input_ids"]
        assert ours["labels"] == expected["labels"]
        # 4 frames (video_maxlen), one tile of image_seq_length tokens each, on "FrameN: " lines.
        assert tokenizer.decode(ours["input_ids"]).count("Frame") == 4
        assert_same_inputs({"pixel_values": collator([ours])["pixel_values"]},
                           {"pixel_values": expected["mm_inputs"]["pixel_values"]})
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir))
    with torch.no_grad():
        loss = model(**collator([rows[0], rows[1]])).loss
    assert torch.isfinite(loss) and loss > 0


def test_a_video_before_an_image_in_one_row_is_refused(model_dir, tmp_path):
    _, template = load_tokenizer_and_template(make_cfg(model_dir, tmp_path))
    frames = [str(DEMO / "mllm_demo_data" / "1.jpg")] * 2  # a video given as its frames
    image = str(DEMO / "mllm_demo_data" / "2.jpg")
    out = expand_media(template, [{"role": "user", "content": "<image><video>"}], [image], videos=[frames])
    assert out[0]["content"].endswith("\nFrame2: <img>" + "<IMG_CONTEXT>" * 4 + "</img>")
    with pytest.raises(DataError, match=r"a row puts a <video> before an <image>: InternVL rows"):
        expand_media(template, [{"role": "user", "content": "<video><image>"}], [image], videos=[frames])
