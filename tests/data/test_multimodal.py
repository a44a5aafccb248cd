"""Multimodal SFT on a tiny Qwen2-VL built here: <image> expansion, pixel batches, frozen vision tower, training.

Images are small PNGs drawn with PIL in the test; the model (vision tower + merger + 2-layer LM) is random.
"""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from tuneforge.config.schema import all_params
from tuneforge.data.collator import SFTCollator
from tuneforge.data.media import ImageLimits, RowMedia, attach_media_plugin, expand_media
from tuneforge.data.media.qwen2_vl import Qwen2VLPlugin
from tuneforge.data.media.images import load_image, regularized_size
from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template
from tuneforge.errors import DataError
from tuneforge.testing.tiny_model import tiny_config
from tuneforge.testing.tiny_vl_model import build_tiny_qwen2_vl

MEDIA_PARAMS = ("freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model",
                "image_max_pixels", "image_min_pixels")
# (file, width, height) -> image tokens for Qwen2-VL (14-pixel patches, 2x2 merge): 56x56 is a 4x4 patch grid
# -> 4 tokens, 84x56 is 6x4 -> 6 tokens, 112x112 is 8x8 -> 16 tokens.
IMAGES = {"red.png": (56, 56), "wide.png": (84, 56), "big.png": (112, 112)}
ROWS = [
    ("<image>What colour is this?", "Red.", ["red.png"]),
    ("Describe <image> briefly.", "A wide picture.", ["wide.png"]),
    ("<image>And this one?", "A big square.", ["big.png"]),
    ("Compare <image> with <image>.", "The first is red.", ["red.png", "wide.png"]),
]


def test_media_params_are_implemented():
    assert all(all_params()[name].implemented for name in MEDIA_PARAMS)


@pytest.fixture(scope="module")
def vl_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_qwen2_vl")
    build_tiny_qwen2_vl(path)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("vl_data")
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for (name, size), colour in zip(IMAGES.items(), colours):
        image = Image.new("RGB", size, colour)
        for x in range(0, size[0], 7):  # some texture so patches differ
            image.putpixel((x, x % size[1]), (255, 255, 255))
        image.save(path / name)
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "images": images}
            for q, a, images in ROWS]
    bad = {"messages": [{"role": "user", "content": "<image><image>Two?"}, {"role": "assistant", "content": "No."}],
           "images": ["red.png"]}
    (path / "vl.json").write_text(json.dumps(rows))
    (path / "vl_bad.json").write_text(json.dumps(rows[:1] + [bad]))
    entry = {"formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"},
             "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}
    info = {"vl": {"file_name": "vl.json", **entry}, "vl_bad": {"file_name": "vl_bad.json", **entry}}
    (path / "dataset_info.json").write_text(json.dumps(info))
    return path


def make_cfg(vl_dir, data_dir, tmp_path, **values):
    settings = dict(model_name_or_path=str(vl_dir), dataset="vl", dataset_dir=str(data_dir), template="qwen2_vl",
                    cutoff_len=256, stage="sft", do_train=True, output_dir=str(tmp_path / "out"),
                    cache_dir=str(tmp_path / "cache"), report_to="none", seed=42)
    settings.update(values)
    return tiny_config(**settings)


@pytest.fixture
def prepared(vl_dir, data_dir, tmp_path):
    cfg = make_cfg(vl_dir, data_dir, tmp_path)
    tokenizer, template = load_tokenizer_and_template(cfg)
    return cfg, tokenizer, template


# ----------------------------------------------------------------------------------------- expansion


def test_each_image_placeholder_becomes_its_vision_tokens(prepared):
    cfg, tokenizer, template = prepared
    dataset = get_dataset(cfg, tokenizer, template, stage="sft").train_dataset
    ids = tokenizer.convert_tokens_to_ids
    start, pad, end = ids("<|vision_start|>"), ids("<|image_pad|>"), ids("<|vision_end|>")
    expected_pads = [[4], [6], [16], [4, 6]]
    for row, pads in zip(dataset, expected_pads):
        input_ids, labels = row["input_ids"], row["labels"]
        starts = [i for i, token in enumerate(input_ids) if token == start]
        assert len(starts) == len(pads)
        for position, count in zip(starts, pads):
            assert input_ids[position + 1:position + 1 + count] == [pad] * count
            assert input_ids[position + 1 + count] == end
        assert input_ids.count(pad) == sum(pads)
        # Vision tokens sit in the prompt: never trained.
        assert all(label == -100 for token, label in zip(input_ids, labels) if token in (start, pad, end))
        assert row["images"] and all(os.path.isfile(path) for path in row["images"])


def test_expanded_text_is_exact(prepared, data_dir):
    _, _, template = prepared
    messages = [{"role": "user", "content": "Look <image> here"}, {"role": "assistant", "content": "ok"}]
    out = expand_media(template, messages, [str(data_dir / "wide.png")])
    assert out[0]["content"] == "Look <|vision_start|>" + "<|image_pad|>" * 6 + "<|vision_end|> here"
    assert out[1] == messages[1] and messages[0]["content"] == "Look <image> here"  # input untouched


@pytest.mark.parametrize("size", [(56, 56), (84, 56), (1000, 300), (10, 50), (700, 20), (3000, 3000)])
def test_token_count_matches_the_image_processor(prepared, tmp_path, size):
    """The count computed from the header equals the image processor's grid on the resized pixels."""
    from PIL import Image

    _, _, template = prepared
    plugin = template.media_plugin
    path = tmp_path / "image.png"
    Image.new("RGB", size, (10, 20, 30)).save(path)
    grid = plugin.image_processor(images=[load_image(str(path), plugin.limits)], return_tensors="pt")["image_grid_thw"]
    assert plugin.image_seqlen(str(path)) == int(grid.prod()) // plugin.image_processor.merge_size ** 2


def test_pixel_limits_follow_llamafactory():
    limits = ImageLimits(max_pixels=768 * 768, min_pixels=32 * 32, qwen_vl_sides=True)
    assert regularized_size(3000, 3000, limits) == (768, 768)
    assert regularized_size(10, 10, limits) == (32, 32)  # min pixels first, then the 28-pixel sides
    assert regularized_size(10, 50, limits) == (28, 71)
    assert regularized_size(6000, 20, limits) == (5040, 28)  # 28 high, then the 200:1 aspect cap (x180)
    assert regularized_size(1000, 300, ImageLimits(max_pixels=10000)) == (182, 54)


def test_image_max_pixels_changes_the_count(vl_dir, data_dir, tmp_path):
    cfg = make_cfg(vl_dir, data_dir, tmp_path, image_max_pixels=56 * 56)
    _, template = load_tokenizer_and_template(cfg)
    assert template.media_plugin.image_seqlen(str(data_dir / "big.png")) == 4  # 112x112 -> 56x56


def test_placeholder_count_mismatch_is_a_data_error(prepared, data_dir):
    _, _, template = prepared
    messages = [{"role": "user", "content": "<image><image>"}, {"role": "assistant", "content": "x"}]
    with pytest.raises(DataError, match=r"1 image\(s\) but 2 <image> placeholder\(s\)"):
        expand_media(template, messages, [str(data_dir / "red.png")])


def test_data_checks_report_a_row_with_more_placeholders_than_images(vl_dir, data_dir, tmp_path):
    from tuneforge.data.loader import load_and_merge

    cfg = make_cfg(vl_dir, data_dir, tmp_path, dataset="vl_bad")
    dataset, [report] = load_and_merge(["vl_bad"], cfg.data, cfg.model, cfg.train, "sft")
    assert (report.total, report.invalid, len(dataset)) == (2, 1, 1)
    assert "1 image(s) but 2 <image> placeholder(s)" in report.examples[0].reason


def test_images_with_a_text_template_are_refused(vl_dir, data_dir, tmp_path):
    cfg = make_cfg(vl_dir, data_dir, tmp_path, template="qwen")
    tokenizer, template = load_tokenizer_and_template(cfg)
    with pytest.raises(DataError, match="images: a row has images but the 'qwen' template has no media support"):
        get_dataset(cfg, tokenizer, template, stage="sft")


def test_model_without_image_processor_is_named(tmp_path, data_dir, tiny_qwen2_dir):
    cfg = make_cfg(tiny_qwen2_dir, data_dir, tmp_path)
    _, template = load_tokenizer_and_template(cfg)
    assert template.media_plugin is None
    with pytest.raises(DataError, match="has no image processor"):
        expand_media(template, [{"role": "user", "content": "<image>"}], ["x.png"])


def test_audios_are_refused_clearly(prepared):
    _, _, template = prepared
    with pytest.raises(DataError, match="audios: the Qwen2-VL models take only images, videos"):
        expand_media(template, [{"role": "user", "content": "<audio>"}], None, audios=["a.wav"])


# ------------------------------------------------------------------------------------------- collator


def test_collator_builds_pixel_inputs_for_image_rows(prepared, data_dir):
    cfg, tokenizer, template = prepared
    dataset = get_dataset(cfg, tokenizer, template, stage="sft").train_dataset
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)
    text_row = {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7],
                "images": None, "videos": None, "audios": None}
    batch = collator([dataset[3], text_row, dataset[0]])
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 6], [1, 4, 4]]
    assert batch["pixel_values"].shape == (16 + 24 + 16, 3 * 2 * 14 * 14)
    assert batch["input_ids"].shape[0] == 3 and "images" not in batch
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert torch.equal(batch["mm_token_type_ids"], (batch["input_ids"] == image_pad).long())
    assert batch["mm_token_type_ids"].sum(dim=1).tolist() == [10, 0, 4]
    # A text-only batch gets no pixel inputs; without a plugin media rows are refused as before.
    assert "pixel_values" not in collator([text_row])
    with pytest.raises(DataError, match="holds images/videos/audios but this run has no media plugin"):
        SFTCollator(pad_token_id=tokenizer.pad_token_id)([dataset[0]])


def test_an_image_cut_by_cutoff_len_is_a_clear_error(vl_dir, data_dir, tmp_path):
    cfg = make_cfg(vl_dir, data_dir, tmp_path, cutoff_len=16)
    tokenizer, template = load_tokenizer_and_template(cfg)
    dataset = get_dataset(cfg, tokenizer, template, stage="sft").train_dataset
    collator = SFTCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)
    with pytest.raises(DataError, match=r"holds \d+ <\|image_pad\|> tokens but its images need 16: cutoff_len"):
        collator([dataset[2]])


# ------------------------------------------------------------------------------------------- training


def _train(vl_dir, data_dir, output_dir, **values):
    import tuneforge.train.stages.sft as sft_recipe

    settings = dict(output_dir=str(output_dir), per_device_train_batch_size=4, max_steps=20, logging_steps=5,
                    save_steps=100, learning_rate=1e-2, disable_gradient_checkpointing=True)
    settings.update(values)
    cfg = make_cfg(vl_dir, data_dir, output_dir, **settings)
    return sft_recipe.run_sft(cfg)


def _losses(output_dir):
    return [json.loads(line)["loss"] for line in open(os.path.join(output_dir, "trainer_log.jsonl"))]


def _changed(vl_dir, output_dir):
    before = load_file(os.path.join(vl_dir, "model.safetensors"))
    after = load_file(os.path.join(output_dir, "model.safetensors"))
    return {name for name in before if not torch.equal(before[name], after[name])}, set(before)


@pytest.fixture(scope="module")
def lora_run(vl_dir, data_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("vl_lora")
    _train(vl_dir, data_dir, output_dir, finetuning_type="lora", disable_gradient_checkpointing=False)
    return output_dir


def test_lora_trains_on_images_and_skips_the_vision_tower(lora_run):
    losses = _losses(lora_run)
    assert losses[-1] < 0.5 * losses[0], losses
    weights = load_file(os.path.join(lora_run, "adapter_model.safetensors"))
    assert weights and all("language_model" in name for name in weights)
    assert not any("visual" in name for name in weights)


@pytest.mark.parametrize("freeze_vision_tower", [True, False])
def test_full_training_freezes_the_vision_tower_by_default(vl_dir, data_dir, tmp_path, freeze_vision_tower):
    output_dir = tmp_path / "full"
    _train(vl_dir, data_dir, output_dir, finetuning_type="full", learning_rate=2e-3, max_steps=10,
           freeze_vision_tower=freeze_vision_tower)
    losses = _losses(output_dir)
    assert losses[-1] < losses[0], losses
    changed, names = _changed(vl_dir, output_dir)
    vision = {name for name in names if "visual.patch_embed" in name or "visual.blocks" in name}
    projector = {name for name in names if "visual.merger" in name}
    assert projector.isdisjoint(changed)  # freeze_multi_modal_projector defaults to true
    if freeze_vision_tower:
        assert changed == names - vision - projector
    else:
        assert changed == names - projector


def test_freeze_tuning_trains_only_the_chosen_language_layer(vl_dir, data_dir, tmp_path):
    output_dir = tmp_path / "freeze"
    _train(vl_dir, data_dir, output_dir, finetuning_type="freeze", freeze_trainable_layers=1, max_steps=5,
           logging_steps=1)
    changed, _ = _changed(vl_dir, output_dir)
    # Saved in the original Qwen2-VL checkpoint layout: model.layers.N (LM), visual.* (vision tower + merger).
    assert changed and all(name.startswith("model.layers.1.") for name in changed)
