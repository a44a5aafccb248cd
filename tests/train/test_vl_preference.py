"""DPO and KTO on images with a tiny Qwen2-VL: the processors expand media through the plugin, the collators
give the model the plugin's inputs (the same images for chosen and rejected, and for KTO's KL rows), and
training runs with a finite, falling loss. The id-level hook (`expand_token_ids`) reaches sft/dpo/kto rows.
"""

import json
import math
import os
from dataclasses import dataclass

import pytest
import torch

from tuneforge.data.collator import KL_MEDIA_INPUTS, MEDIA_INPUTS, KTOCollator, PairwiseCollator
from tuneforge.data.media.qwen2_vl import Qwen2VLPlugin
from tuneforge.data.pipeline import get_dataset, load_tokenizer_and_template
from tuneforge.testing.tiny_model import tiny_config
from tuneforge.testing.tiny_vl_model import build_tiny_qwen2_vl

# 56x56 -> 4 image tokens, 84x56 -> 6 (14-pixel patches, 2x2 merge).
IMAGES = {"red.png": ((56, 56), (200, 30, 30)), "wide.png": ((84, 56), (30, 30, 200))}
PAIRS = [("<image>What colour is this?", "Red.", "Blue.", "red.png"),
         ("Describe <image> briefly.", "A wide blue picture.", "A tiny red dot.", "wide.png")]


@pytest.fixture(scope="module")
def vl_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_qwen2_vl_pref")
    build_tiny_qwen2_vl(path)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("vl_pref_data")
    for name, (size, colour) in IMAGES.items():
        Image.new("RGB", size, colour).save(path / name)
    dpo = [{"conversations": [{"from": "human", "value": q}], "chosen": {"from": "gpt", "value": good},
            "rejected": {"from": "gpt", "value": bad}, "images": [image]} for q, good, bad, image in PAIRS]
    kto = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer}], "label": label,
            "images": [image]} for q, good, bad, image in PAIRS for answer, label in ((good, True), (bad, False))]
    (path / "dpo.json").write_text(json.dumps(dpo))
    (path / "kto.json").write_text(json.dumps(kto))
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    info = {"vl_dpo": {"file_name": "dpo.json", "ranking": True, "formatting": "sharegpt",
                       "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected",
                                   "images": "images"}},
            "vl_kto": {"file_name": "kto.json", "formatting": "sharegpt",
                       "columns": {"messages": "messages", "kto_tag": "label", "images": "images"}, "tags": tags},
            "vl_sft": {"file_name": "kto.json", "formatting": "sharegpt",
                       "columns": {"messages": "messages", "images": "images"}, "tags": tags}}
    (path / "dataset_info.json").write_text(json.dumps(info))
    return path


def make_cfg(vl_dir, data_dir, out, stage, **values):
    settings = dict(model_name_or_path=str(vl_dir), dataset=f"vl_{stage}", dataset_dir=str(data_dir),
                    template="qwen2_vl", cutoff_len=128, stage=stage, do_train=True, output_dir=str(out / "run"),
                    cache_dir=str(out / "cache"), report_to="none", seed=42)
    settings.update(values)
    return tiny_config(**settings)


def prepared(vl_dir, data_dir, tmp_path, stage):
    cfg = make_cfg(vl_dir, data_dir, tmp_path, stage)
    tokenizer, template = load_tokenizer_and_template(cfg)
    return tokenizer, template, get_dataset(cfg, tokenizer, template, stage=stage).train_dataset


def test_pairwise_rows_hold_vision_tokens_and_both_halves_get_the_images(vl_dir, data_dir, tmp_path):
    tokenizer, template, dataset = prepared(vl_dir, data_dir, tmp_path, "dpo")
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    rows = [dataset[0], dataset[1]]
    assert [row["chosen_input_ids"].count(pad) for row in rows] == [4, 6]
    assert [row["rejected_input_ids"].count(pad) for row in rows] == [4, 6]
    batch = PairwiseCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)(rows)
    inputs = batch[MEDIA_INPUTS]
    # chosen red, chosen wide, rejected red, rejected wide: each image once per half, in row order.
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 6], [1, 4, 4], [1, 4, 6]]
    assert inputs["pixel_values"].shape[0] == 2 * (16 + 24)
    assert inputs["mm_token_type_ids"].sum(dim=1).tolist() == [4, 6, 4, 6]
    assert torch.equal(inputs["mm_token_type_ids"], (batch["input_ids"] == pad).long())


def test_kto_rows_and_kl_rows_each_get_the_rows_images(vl_dir, data_dir, tmp_path):
    tokenizer, template, dataset = prepared(vl_dir, data_dir, tmp_path, "kto")
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    rows = [dataset[i] for i in range(len(dataset))]
    batch = KTOCollator(pad_token_id=tokenizer.pad_token_id, media_plugin=template.media_plugin)(rows)
    counts = [row["input_ids"].count(pad) for row in rows]
    assert sorted(counts) == [4, 4, 6, 6]
    for key, ids in ((MEDIA_INPUTS, batch["input_ids"]), (KL_MEDIA_INPUTS, batch["kl_input_ids"])):
        assert batch[key]["mm_token_type_ids"].sum(dim=1).tolist() == counts
        assert torch.equal(batch[key]["mm_token_type_ids"], (ids == pad).long())
    assert torch.equal(batch[MEDIA_INPUTS]["pixel_values"], batch[KL_MEDIA_INPUTS]["pixel_values"])


@dataclass(repr=False)
class PrefixPlugin(Qwen2VLPlugin):
    """Qwen2-VL plus an id-level change: one marker id before the prompt per image (as paligemma does)."""

    marker: int = 7

    def expand_token_ids(self, input_ids, labels, media):
        prefix = [self.marker] * len(media.images)
        return prefix + input_ids, None if labels is None else [-100] * len(prefix) + labels


@pytest.mark.parametrize("stage,ids_key", [("sft", "input_ids"), ("dpo", "chosen_input_ids"),
                                           ("kto", "input_ids")])
def test_the_plugins_id_level_change_reaches_every_stage(vl_dir, data_dir, tmp_path, stage, ids_key):
    cfg = make_cfg(vl_dir, data_dir, tmp_path, stage, overwrite_cache=True)
    tokenizer, template = load_tokenizer_and_template(cfg)
    plain = get_dataset(cfg, tokenizer, template, stage=stage).train_dataset[0]
    template.media_plugin = PrefixPlugin(**{name: getattr(template.media_plugin, name) for name in
                                            ("image_processor", "image_token", "image_token_id", "vision_bos_token",
                                             "vision_eos_token", "limits", "placeholder")}, marker=7)
    row = get_dataset(cfg.replace(cache_dir=str(tmp_path / "cache2")), tokenizer, template,
                      stage=stage).train_dataset[0]
    assert row[ids_key] == [7] + plain[ids_key]
    labels_key = ids_key.replace("input_ids", "labels")
    assert row[labels_key] == [-100] + plain[labels_key]


def _losses(output_dir):
    return [json.loads(line)["loss"] for line in open(os.path.join(output_dir, "trainer_log.jsonl"))]


@pytest.mark.parametrize("stage", ["dpo", "kto"])
def test_preference_training_on_images_lowers_the_loss(vl_dir, data_dir, tmp_path, stage):
    from tuneforge.train.stages.dpo import run_dpo
    from tuneforge.train.stages.kto import run_kto

    cfg = make_cfg(vl_dir, data_dir, tmp_path, stage, finetuning_type="lora", per_device_train_batch_size=4,
                   max_steps=3, logging_steps=1, save_steps=100, learning_rate=5e-2, pref_beta=0.5,
                   disable_gradient_checkpointing=True)
    (run_dpo if stage == "dpo" else run_kto)(cfg)
    losses = _losses(cfg.train.output_dir)
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses), losses
    assert losses[-1] < losses[0], losses
