"""Padding-free batches: exact packed tensors, the same loss and gradients as the padded batch, a cost-based
choice of layout, a model check that keeps padded batches where packing would change results, and the
same training trajectory and token count as padded training."""

import logging

import pytest
import torch
from transformers import AutoModelForCausalLM

from test_train_recipes import run_recipe
from tuneforge.config import make_config
from tuneforge.data.collator import PairwiseCollator, SFTCollator
from tuneforge.train.batching.packed_attention import PER_ROW_SDPA, can_use_per_row_sdpa, use_per_row_sdpa
from tuneforge.train.batching.padding_free import (DISABLE_ENV, BatchCost, PaddingFreeCollator, is_padding_free_batch,
                                          padding_free_collator)

ALWAYS_PACK = BatchCost(attention_pair=0.0, lm_head_token=0.0)  # any padding makes packing cheaper
SFT_ROWS = [
    {"input_ids": [5, 6, 7, 8], "attention_mask": [1, 1, 1, 1], "labels": [-100, -100, 7, 8], "images": None},
    {"input_ids": [9, 10, 11], "attention_mask": [1, 1, 1], "labels": [-100, 10, 11], "images": None},
]


def _padded_collator():
    return SFTCollator(pad_token_id=0, pad_to_multiple_of=8)


@pytest.fixture(scope="module")
def model_dirs(tiny_llama_dir, tiny_qwen2_dir):
    return {"llama": tiny_llama_dir, "qwen2": tiny_qwen2_dir}


def _run():
    """A run's config and training arguments, built when called: TUNEFORGE_PADDING_FREE applies at load."""
    cfg = make_config({})
    return {"cfg": cfg, "args": cfg.training_args}


def test_packed_batch_tensors():
    batch = PaddingFreeCollator(_padded_collator(), ALWAYS_PACK)(SFT_ROWS)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2]]
    # Position i is trained to predict its own row's label i+1; a row's last token predicts nothing (not the
    # next row's first token). Only those positions reach the LM head.
    assert batch["logits_to_keep"].tolist() == [1, 2, 4, 5]
    assert batch["shift_labels"].tolist() == [[7, 8, 10, 11]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 8, -100, 10, 11]]
    assert batch["use_cache"] is False  # transformers separates packed rows only without a KV cache
    assert "attention_mask" not in batch and is_padding_free_batch(batch)


def test_pt_rows_train_every_next_token():
    rows = [{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}]
    batch = PaddingFreeCollator(_padded_collator(), ALWAYS_PACK)(rows)
    assert batch["logits_to_keep"].tolist() == [0, 1, 3]
    assert batch["shift_labels"].tolist() == [[6, 7, 9]]


def test_batches_that_stay_padded():
    collator = PaddingFreeCollator(_padded_collator(), ALWAYS_PACK)
    assert not is_padding_free_batch(collator(SFT_ROWS[:1]))  # one row has no padding to remove
    with_packing_info = [dict(row, position_ids=list(range(len(row["input_ids"])))) for row in SFT_ROWS]
    assert "attention_mask" in collator(with_packing_info)  # rows from data packing keep their layout
    with_image = [dict(SFT_ROWS[0], images=["cat.png"]), SFT_ROWS[1]]
    assert collator.pack(with_image) is None
    no_targets = [dict(row, labels=[-100] * len(row["input_ids"])) for row in SFT_ROWS]
    assert collator.pack(no_targets) is None


def test_layout_follows_the_estimated_cost():
    dense = PaddingFreeCollator(_padded_collator(), BatchCost(attention_pair=1e-3, lm_head_token=0.3))
    equal = [{"input_ids": list(range(3, 131))} for _ in range(4)]  # packed pt rows: no padding to save
    skewed = [{"input_ids": list(range(3, 23))}, {"input_ids": list(range(3, 303))}]
    assert dense.pack(equal) is None
    assert dense.pack(skewed) is not None
    # FlashAttention-2 attends within rows only, so even equal rows gain (fewer LM-head positions).
    varlen = PaddingFreeCollator(_padded_collator(), BatchCost(attention_pair=1e-3, lm_head_token=0.3, varlen=True))
    assert varlen.pack(equal) is not None
    limited = PaddingFreeCollator(_padded_collator(), BatchCost(0.0, 0.0, max_packed_tokens=300))
    assert limited.pack(skewed) is None  # 320 tokens: a dense mask that large is not worth it


@pytest.mark.parametrize("arch, attention", [("llama", "sdpa"), ("llama", "eager"), ("qwen2", "sdpa"),
                                             ("llama", PER_ROW_SDPA), ("qwen2", PER_ROW_SDPA)])
def test_packed_batch_gives_the_padded_loss_and_gradients(model_dirs, arch, attention):
    model = AutoModelForCausalLM.from_pretrained(str(model_dirs[arch]),
                                                 attn_implementation="sdpa" if attention == PER_ROW_SDPA else attention)
    if attention == PER_ROW_SDPA:
        assert use_per_row_sdpa(model) == "sdpa"
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(1)
    rows = []
    for length, prompt in ((9, 4), (23, 10), (4, 1)):
        ids = torch.randint(0, vocab, (length,), generator=generator).tolist()
        rows.append({"input_ids": ids, "attention_mask": [1] * length, "labels": [-100] * prompt + ids[prompt:]})
    collator = PaddingFreeCollator(_padded_collator(), ALWAYS_PACK)
    results = []
    for batch in (collator.padded_collator(rows), collator(rows)):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        results.append((loss.detach(), {name: param.grad.clone() for name, param in model.named_parameters()}))
    (padded_loss, padded_grads), (packed_loss, packed_grads) = results
    assert is_padding_free_batch(collator(rows))
    assert packed_loss == pytest.approx(float(padded_loss), abs=1e-5)
    for name, grad in padded_grads.items():
        assert torch.allclose(packed_grads[name], grad, atol=1e-5), name


def test_enabled_after_checking_the_model(model_dirs, caplog):
    model = AutoModelForCausalLM.from_pretrained(str(model_dirs["llama"]))
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        collator = padding_free_collator(model, _padded_collator(), **_run())
    assert isinstance(collator, PaddingFreeCollator)
    assert "Padding-free batches: on (rows of a batch train as one row without padding; attention per row)" \
        in caplog.text
    assert model.config._attn_implementation == PER_ROW_SDPA and collator.cost.varlen


def test_per_row_attention_only_for_full_causal_sdpa(model_dirs):
    config = AutoModelForCausalLM.from_pretrained(str(model_dirs["qwen2"])).config
    assert can_use_per_row_sdpa(config)
    config.layer_types = ["sliding_attention"] + config.layer_types[1:]  # a window per row is not implemented
    assert not can_use_per_row_sdpa(config)
    config._attn_implementation = "eager"
    assert not can_use_per_row_sdpa(config)


class _IgnoresPositionIds(torch.nn.Module):
    """Stands for a remote-code model whose forward drops position_ids: it would mix packed rows."""

    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.config = model.config

    def forward(self, position_ids=None, **inputs):
        return self.inner(**inputs)

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()


def test_stays_padded_where_the_model_would_mix_packed_rows(model_dirs, caplog):
    model = _IgnoresPositionIds(AutoModelForCausalLM.from_pretrained(str(model_dirs["llama"])))
    padded = _padded_collator()
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        assert padding_free_collator(model, padded, **_run()) is padded
    assert "Padding-free batches: off (on this model a packed batch's loss" in caplog.text
    assert model.training  # the check put the model back in training mode
    assert model.config._attn_implementation == "sdpa"  # and its attention


def test_switched_off_by_environment_and_for_other_batch_kinds(model_dirs, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(str(model_dirs["llama"]))
    pairwise = PairwiseCollator(pad_token_id=0)
    assert padding_free_collator(model, pairwise, **_run()) is pairwise
    trains_on_padding = SFTCollator(pad_token_id=0, label_pad_token_id=0)  # ignore_pad_token_for_loss: false
    assert padding_free_collator(model, trains_on_padding, **_run()) is trains_on_padding
    monkeypatch.setenv(DISABLE_ENV, "0")
    padded = _padded_collator()
    assert padding_free_collator(model, padded, **_run()) is padded


def test_training_follows_the_padded_trajectory_and_counts_every_token(model_dirs, tmp_path, monkeypatch):
    run = dict(finetuning_type="lora", learning_rate=1e-2, max_steps=6, logging_steps=1, save_steps=100,
               per_device_train_batch_size=4, include_num_input_tokens_seen="non_padding")
    _, packed_trainer = run_recipe("sft", model_dirs["llama"], tmp_path / "packed", **run)
    monkeypatch.setenv(DISABLE_ENV, "0")
    _, padded_trainer = run_recipe("sft", model_dirs["llama"], tmp_path / "padded", **run)
    assert isinstance(packed_trainer.data_collator, PaddingFreeCollator)
    assert not isinstance(padded_trainer.data_collator, PaddingFreeCollator)

    def losses(trainer):
        return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    assert losses(packed_trainer) == pytest.approx(losses(padded_trainer), abs=1e-4)
    # Rows end with eos, which is also the pad token: it still counts as a real token.
    dataset = packed_trainer.train_dataset
    assert is_padding_free_batch(packed_trainer.data_collator([dataset[index] for index in range(4)]))
    tokens_per_epoch = sum(len(ids) for ids in dataset["input_ids"])
    assert padded_trainer.state.num_input_tokens_seen == 3 * tokens_per_epoch  # 6 steps x 4 rows = 3 epochs
    assert packed_trainer.state.num_input_tokens_seen == 3 * tokens_per_epoch
