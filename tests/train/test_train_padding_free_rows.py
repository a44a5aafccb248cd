"""Padding-free preference batches (train/batching/padding_free_rows.py): rm / dpo / kto give the padded batch's loss,
metrics and gradients on a real tiny run's first batch; the packer is checked on the model, refuses a model
whose packed outputs differ, keeps batches padded where that is cheaper, and TUNEFORGE_PADDING_FREE=0 turns
it off."""

import pytest
import torch

from test_train_preference import run_stage
from tuneforge.train.batching.padding_free import DISABLE_ENV, BatchCost
from tuneforge.train.batching.padding_free_rows import RowPacker, _probe_mismatch

ALWAYS_PACK = RowPacker(BatchCost(attention_pair=0.0, lm_head_token=0.0), always=True)


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir):
    return tiny_llama_dir


def _trainer(stage, model_dir, output_dir, **values):
    _, trainer = run_stage(stage, model_dir, output_dir, max_steps=1, logging_steps=1, **values)
    return trainer


def _first_batch(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["attention_mask"] == 0).any()  # rows of different lengths: there is padding to remove
    return batch


def _loss_and_metrics(trainer, batch, packer):
    trainer._row_packer = packer
    trainer.model.eval()  # no dropout: both layouts see the same arithmetic
    trainer.model.zero_grad()
    loss = trainer.preference_loss(trainer.model, batch)
    loss.backward()
    grads = {name: param.grad.clone() for name, param in trainer.model.named_parameters() if param.grad is not None}
    return float(loss), trainer._pop_metrics("eval"), grads


def _assert_same(trainer, batch):
    assert ALWAYS_PACK.layout(batch["attention_mask"], start=0) is not None  # the packed path really runs
    padded = _loss_and_metrics(trainer, batch, None)
    packed = _loss_and_metrics(trainer, batch, ALWAYS_PACK)
    assert packed[0] == pytest.approx(padded[0], abs=1e-5)
    assert packed[1].keys() == padded[1].keys() and len(padded[1]) >= 3
    for name, value in padded[1].items():
        assert packed[1][name] == pytest.approx(value, abs=1e-5), name
    assert packed[2].keys() == padded[2].keys() and padded[2]
    for name, grad in padded[2].items():
        assert torch.allclose(packed[2][name], grad, atol=1e-5), name
    return padded


def test_dpo_sigmoid_ld_dpo_and_reference_free_orpo_match_padded(model_dir, tmp_path):
    trainer = _trainer("dpo", model_dir, tmp_path, finetuning_type="lora")
    assert isinstance(trainer._row_packer, RowPacker)  # the model check passed during the real run
    batch = _first_batch(trainer)
    _, metrics, _ = _assert_same(trainer, batch)
    assert {"rewards/chosen", "rewards/margins", "logps/rejected", "logits/chosen"} <= metrics.keys()
    trainer.ld_alpha = 0.5  # LD-DPO weighs tokens by their position in the answer
    _assert_same(trainer, batch)
    trainer.loss_type, trainer.ld_alpha = "orpo", None
    _, metrics, _ = _assert_same(trainer, batch)
    assert "odds_ratio_loss" in metrics


def test_kto_matches_padded(model_dir, tmp_path):
    trainer = _trainer("kto", model_dir, tmp_path, finetuning_type="lora")
    _, metrics, _ = _assert_same(trainer, _first_batch(trainer))
    assert {"rewards/chosen", "rewards/rejected", "kl"} <= metrics.keys()


def test_reward_model_matches_padded(model_dir, tmp_path):
    trainer = _trainer("rm", model_dir, tmp_path, finetuning_type="lora")
    assert isinstance(trainer._row_packer, RowPacker)
    _, metrics, _ = _assert_same(trainer, _first_batch(trainer))
    assert {"accuracy", "rewards/chosen", "rewards/rejected"} <= metrics.keys()


def test_escape_hatch_keeps_padded_batches(model_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(DISABLE_ENV, "0")
    with caplog.at_level("INFO"):
        trainer = _trainer("rm", model_dir, tmp_path, finetuning_type="lora")
    assert trainer._row_packer is None
    assert f"Padding-free batches: off ({DISABLE_ENV}=0)" in caplog.text


def test_a_model_whose_packed_outputs_differ_stays_padded():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(50, 4)

        def get_input_embeddings(self):
            return self.embed

    model = Model()

    def score(model, batch, packer):  # a forward that ignores position_ids would disagree like this
        out = batch["input_ids"].float() + (0.5 if packer is not None else 0.0)
        return out, batch["attention_mask"]

    assert "differ from the padded ones by 0.500000" in _probe_mismatch(model, score)


def test_layout_packs_real_tokens_only_where_cheaper():
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
    row, column = ALWAYS_PACK.layout(mask, start=0)
    assert row.tolist() == [0] * 3 + [1] * 8 and column.tolist() == [0, 1, 2] + list(range(8))
    assert ALWAYS_PACK.layout(mask[:1], start=0) is None  # a single row has nothing to unpad
    assert ALWAYS_PACK.layout(torch.tensor([[0, 1, 1], [1, 1, 1]]), start=0) is None  # left padding
    dense = RowPacker(BatchCost(attention_pair=1e-3, lm_head_token=0.3))
    assert dense.layout(torch.ones(4, 64, dtype=torch.long), start=0) is None  # no padding to save
    assert dense.layout(mask, start=0) is not None
