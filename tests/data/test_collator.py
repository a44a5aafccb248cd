"""Collators: exact padded tensors, pairwise/KTO layouts and the neat-packing block-diagonal mask."""

import pytest
import torch

from tuneforge.data.collator import KTOCollator, PairwiseCollator, SFTCollator, prepare_4d_attention_mask
from tuneforge.errors import DataError

M = -100


def test_sft_collator_pads_right_with_pad_and_ignore_index():
    collate = SFTCollator(pad_token_id=0)
    batch = collate([
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [M, 6, 7], "images": None},
        {"input_ids": [8], "attention_mask": [1], "labels": [8], "images": None},
    ])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[M, 6, 7], [8, M, M]]
    assert batch["input_ids"].dtype == torch.long


def test_sft_collator_pad_to_multiple_of_and_left_padding():
    collate = SFTCollator(pad_token_id=9, pad_to_multiple_of=4, padding_side="left", label_pad_token_id=9)
    batch = collate([{"input_ids": [5, 6], "attention_mask": [1, 1], "labels": [5, 6]}])
    assert batch["input_ids"].tolist() == [[9, 9, 5, 6]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1]]
    assert batch["labels"].tolist() == [[9, 9, 5, 6]]


def test_sft_collator_pads_unaligned_prediction_labels_on_their_own():
    collate = SFTCollator(pad_token_id=0)
    batch = collate([{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [8]},
                     {"input_ids": [5], "attention_mask": [1], "labels": [8, 9]}])
    assert batch["labels"].tolist() == [[8, M], [8, 9]]


def test_sft_collator_builds_pt_labels_from_input_ids():
    collate = SFTCollator(pad_token_id=2)
    batch = collate([{"input_ids": [5, 2], "attention_mask": [1, 1]}, {"input_ids": [7], "attention_mask": [1]}])
    # The eos (= pad id here) of a real token is trained; only padded positions are ignored.
    assert batch["labels"].tolist() == [[5, 2], [7, M]]


def test_sft_collator_refuses_multimodal_rows():
    with pytest.raises(DataError, match="holds images/videos/audios but this run has no media plugin"):
        SFTCollator(pad_token_id=0)([{"input_ids": [5], "attention_mask": [1], "labels": [5], "images": ["a.png"]}])


def test_prepare_4d_attention_mask_is_block_diagonal_and_causal():
    mask = prepare_4d_attention_mask(torch.tensor([[1, 1, 2, 2, 2, 0]]), torch.float32)
    low = torch.finfo(torch.float32).min
    allowed = (mask[0, 0] == 0).int().tolist()
    assert mask.shape == (1, 1, 6, 6)
    assert allowed == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 0],
    ]
    assert mask[0, 0, 0, 1].item() == low


def test_neat_packing_collator_keeps_position_ids_and_builds_4d_mask():
    collate = SFTCollator(pad_token_id=0, block_diag_attn=True, compute_dtype=torch.bfloat16)
    batch = collate([{"input_ids": [5, 6, 7, 0], "attention_mask": [1, 1, 2, 0], "position_ids": [0, 1, 0, 0],
                      "labels": [M, 6, M, M], "packing_params": {"sequence_boundaries": [0, 2, 3, 4]}}])
    assert batch["position_ids"].tolist() == [[0, 1, 0, 0]]
    assert batch["attention_mask"].dtype == torch.bfloat16
    assert (batch["attention_mask"][0, 0] == 0).int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0],
                                                                    [0, 0, 0, 0]]
    assert "packing_params" not in batch


def test_neat_packing_with_flash_attention_drops_the_mask():
    collate = SFTCollator(pad_token_id=0, block_diag_attn=True, attn_implementation="flash_attention_2")
    batch = collate([{"input_ids": [5, 6], "attention_mask": [1, 2], "position_ids": [0, 0], "labels": [5, 6]}])
    assert batch["attention_mask"] is None
    assert batch["position_ids"].tolist() == [[0, 0]]


def test_pairwise_collator_puts_chosen_rows_first():
    collate = PairwiseCollator(pad_token_id=0)
    features = [
        {"chosen_input_ids": [1, 2], "chosen_attention_mask": [1, 1], "chosen_labels": [M, 2],
         "rejected_input_ids": [1, 3, 4], "rejected_attention_mask": [1, 1, 1], "rejected_labels": [M, 3, 4],
         "images": None, "videos": None, "audios": None},
        {"chosen_input_ids": [5], "chosen_attention_mask": [1], "chosen_labels": [5],
         "rejected_input_ids": [6], "rejected_attention_mask": [1], "rejected_labels": [6],
         "images": None, "videos": None, "audios": None},
    ]
    batch = collate(features)
    assert batch["input_ids"].tolist() == [[1, 2, 0], [5, 0, 0], [1, 3, 4], [6, 0, 0]]
    assert batch["labels"].tolist() == [[M, 2, M], [5, M, M], [M, 3, 4], [6, M, M]]


def test_kto_collator_pads_kl_rows_separately():
    collate = KTOCollator(pad_token_id=0)
    features = [
        {"input_ids": [1, 2], "attention_mask": [1, 1], "labels": [M, 2], "kl_input_ids": [1, 9, 9, 9],
         "kl_attention_mask": [1, 1, 1, 1], "kl_labels": [M, 9, 9, 9], "kto_tags": True, "images": None},
        {"input_ids": [3], "attention_mask": [1], "labels": [3], "kl_input_ids": [3, 2],
         "kl_attention_mask": [1, 1], "kl_labels": [M, 2], "kto_tags": False, "images": None},
    ]
    batch = collate(features)
    assert batch["input_ids"].tolist() == [[1, 2], [3, 0]]
    assert batch["kl_input_ids"].tolist() == [[1, 9, 9, 9], [3, 2, 0, 0]]
    assert batch["kl_labels"].tolist() == [[M, 9, 9, 9], [M, 2, M, M]]
    assert batch["kto_tags"].tolist() == [True, False]
