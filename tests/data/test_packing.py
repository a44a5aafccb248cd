"""Greedy knapsack binning and packed rows (LLaMA-Factory's packing / neat_packing)."""

import pytest

from tuneforge.data.packing import NO_SUBSEQ, PackedExample, greedy_knapsack, pack_examples


def test_greedy_knapsack_takes_the_longest_that_fits():
    assert greedy_knapsack([3, 8, 2, 5, 7, 1], 10) == [[8, 2], [7, 3], [5, 1]]


def test_greedy_knapsack_exact_fill_and_leftovers():
    assert greedy_knapsack([4, 4, 4, 6], 10) == [[6, 4], [4, 4]]
    assert greedy_knapsack([], 10) == []


def test_greedy_knapsack_rejects_an_oversized_length():
    with pytest.raises(ValueError, match="exceeds the packing capacity 5"):
        greedy_knapsack([6], 5)


def example(length, start, images=()):
    ids = list(range(start, start + length))
    return PackedExample(ids, [-100] + ids[1:], list(images), [], [])


def test_pack_examples_rows_have_cutoff_plus_one_tokens():
    examples = [example(3, 10), example(4, 20), example(2, 30)]
    out = pack_examples(examples, cutoff_len=6, pad_token_id=0, neat_packing=False)
    # Bins: [4, 2] then [3]; every row is padded to 7 tokens.
    assert out["input_ids"] == [[20, 21, 22, 23, 30, 31, 0], [10, 11, 12, 0, 0, 0, 0]]
    assert out["labels"] == [[-100, 21, 22, 23, -100, 31, -100], [-100, 11, 12, -100, -100, -100, -100]]
    assert out["position_ids"] == [[0, 1, 2, 3, 0, 1, 0], [0, 1, 2, 0, 0, 0, 0]]
    assert out["attention_mask"] == [[1] * 7, [1] * 7]
    assert out["images"] == [None, None]


def test_pack_examples_equal_lengths_are_taken_last_first():
    out = pack_examples([example(2, 10), example(2, 20)], cutoff_len=4, pad_token_id=0, neat_packing=False)
    assert out["input_ids"] == [[20, 21, 10, 11, 0]]


def test_neat_packing_indexes_examples_and_records_boundaries():
    examples = [example(2, 10, images=["a.png"]), example(3, 20)]
    out = pack_examples(examples, cutoff_len=6, pad_token_id=0, neat_packing=True)
    assert out["input_ids"] == [[20, 21, 22, 10, 11, 0, 0]]
    assert out["attention_mask"] == [[1, 1, 1, 2, 2, 0, 0]]
    assert out["position_ids"] == [[0, 1, 2, 0, 1, 0, 0]]
    assert out["images"] == [["a.png"]]
    assert out["packing_params"] == [{
        "sequence_boundaries": [0, 3, 5, 7],
        "image_subseq_ids": [1],
        "video_subseq_ids": [NO_SUBSEQ],
        "audio_subseq_ids": [NO_SUBSEQ],
        "right_padding_length": 2,
    }]
