"""Per-stage processors: exact ids and labels with a transparent fake template (see processing_fakes.py)."""

import pytest

from processing_fakes import (ASSISTANT_START, BOS, EOS, SYS, USER, FakeTemplate, FakeTokenizer, assistant, batch,
                              row, user)
from tuneforge.data.processors import (KTOProcessor, PairwiseProcessor, PretrainProcessor, ProcessingOptions,
                                       SupervisedProcessor, UnsupervisedProcessor, get_processor, infer_seqlen)
from tuneforge.data.processors.sft_packed import PackedSupervisedProcessor

M = -100


@pytest.mark.parametrize("source, target, cutoff, expected", [
    (10, 3, 20, (10, 3)),    # short answer kept whole, prompt gets the rest
    (5, 30, 20, (5, 15)),    # short prompt kept whole, answer cut
    (30, 30, 20, (10, 10)),  # both long: split in proportion
    (30, 10, 20, (15, 5)),   # answer exactly half the budget counts as long
    (3, 4, 0, (0, 0)),
])
def test_infer_seqlen(source, target, cutoff, expected):
    assert infer_seqlen(source, target, cutoff) == expected


def sft(rows, cutoff=100, efficient_eos=False, **options):
    processor = SupervisedProcessor(FakeTemplate(efficient_eos), FakeTokenizer(), ProcessingOptions(cutoff, **options))
    return processor(batch(*rows)), processor


def test_sft_masks_prompt_and_trains_answer():
    out, _ = sft([row([user("5 6")], [assistant("7 8")], system="3")])
    assert out["input_ids"] == [[SYS, 3, USER, 5, 6, ASSISTANT_START, 7, 8, EOS]]
    assert out["labels"] == [[M, M, M, M, M, M, 7, 8, EOS]]
    assert out["attention_mask"] == [[1] * 9]
    assert out["images"] == [None] and out["videos"] == [None]


def test_sft_trains_every_assistant_turn():
    conversation = [user("5"), assistant("6"), user("7")]
    out, _ = sft([row(conversation, [assistant("8")])])
    assert out["input_ids"] == [[USER, 5, ASSISTANT_START, 6, EOS, USER, 7, ASSISTANT_START, 8, EOS]]
    assert out["labels"] == [[M, M, M, 6, EOS, M, M, M, 8, EOS]]


def test_sft_train_on_prompt():
    out, _ = sft([row([user("5")], [assistant("6")])], train_on_prompt=True)
    assert out["labels"] == out["input_ids"] == [[USER, 5, ASSISTANT_START, 6, EOS]]


def test_sft_mask_history_trains_last_turn_only():
    conversation = [user("5"), assistant("6"), user("7")]
    out, processor = sft([row(conversation, [assistant("8")])], mask_history=True)
    assert out["input_ids"] == [[USER, 5, ASSISTANT_START, 6, EOS, USER, 7, ASSISTANT_START, 8, EOS]]
    assert out["labels"] == [[M, M, M, M, M, M, M, M, 8, EOS]]
    assert processor.template.calls == [("multiturn", True)]  # reasoning templates drop history thoughts


def test_sft_mask_history_keeps_the_last_turn_when_truncating():
    # Budget 6: the last turn (3 + 2 tokens) is spent first and survives, the first turn gets 1 token left.
    conversation = [user("5"), assistant("6"), user("7")]
    out, _ = sft([row(conversation, [assistant("8")])], cutoff=6, mask_history=True)
    assert out["input_ids"] == [[USER, USER, 7, ASSISTANT_START, 8, EOS]]
    assert out["labels"] == [[M, M, M, M, 8, EOS]]


def test_sft_truncation_splits_budget_turn_by_turn():
    # Turn 1: prompt 5 tokens, answer 3 (short: kept), turn 2 gets the rest of the 12-token budget.
    conversation = [user("10 11 12"), assistant("13 14"), user("15 16 17")]
    out, _ = sft([row(conversation, [assistant("18 19 20 21")])], cutoff=12)
    first = [USER, 10, 11, 12, ASSISTANT_START, 13, 14, EOS]
    # 4 left: answer (5 tokens) is long, prompt (5) is long -> int(4 * 5/10) = 2 answer tokens, 2 prompt tokens.
    assert out["input_ids"] == [first + [USER, 15, 18, 19]]
    assert out["labels"] == [[M] * 5 + [13, 14, EOS] + [M, M, 18, 19]]


def test_sft_stops_when_budget_is_spent():
    conversation = [user("5 6"), assistant("7 8"), user("9")]
    out, _ = sft([row(conversation, [assistant("10")])], cutoff=8)
    assert out["input_ids"] == [[USER, 5, 6, ASSISTANT_START, 7, 8, EOS, USER]]
    assert len(out["labels"][0]) == 8


def test_sft_efficient_eos():
    conversation = [user("5"), assistant("6"), user("7")]
    out, _ = sft([row(conversation, [assistant("8")])], efficient_eos=True)
    # Answers carry no eos; each later prompt's first label is eos (it predicts the previous answer's end),
    # and the sequence ends with one trained eos.
    assert out["input_ids"] == [[USER, 5, ASSISTANT_START, 6, USER, 7, ASSISTANT_START, 8, EOS]]
    assert out["labels"] == [[M, M, M, 6, EOS, M, M, 8, EOS]]


def test_sft_efficient_eos_reserves_one_token_for_the_final_eos():
    out, _ = sft([row([user("5 6 7")], [assistant("8 9")])], cutoff=5, efficient_eos=True)
    assert len(out["input_ids"][0]) == 5 and out["input_ids"][0][-1] == EOS


def test_sft_drops_rows_of_the_wrong_shape():
    good = row([user("5")], [assistant("6")])
    even_prompt = row([user("5"), assistant("6")], [assistant("7")])
    no_response = row([user("5")], [])
    out, processor = sft([even_prompt, good, no_response])
    assert out["input_ids"] == [[USER, 5, ASSISTANT_START, 6, EOS]]
    assert processor.dropped == 2


def test_sft_passes_media_through():
    out, _ = sft([row([user("5")], [assistant("6")], images=["a.png"])])
    assert out["images"] == [["a.png"]]


def test_packed_sft_bins_a_batch():
    options = ProcessingOptions(cutoff_len=9, packing=True)
    processor = PackedSupervisedProcessor(FakeTemplate(), FakeTokenizer(), options)
    rows = [row([user("5")], [assistant("6")]),           # 5 tokens
            row([user("5 6")], [assistant("7 8")]),       # 7 tokens
            row([user("5")], [assistant("6 7")])]         # 6 tokens
    out = processor(batch(*rows))
    # Bins of capacity 9: [7], [6], [5] (no two fit together); rows are cutoff_len + 1 = 10 long.
    assert [len(ids) for ids in out["input_ids"]] == [10, 10, 10]
    assert out["input_ids"][0] == [USER, 5, 6, ASSISTANT_START, 7, 8, EOS, 0, 0, 0]
    assert out["labels"][0] == [M, M, M, M, 7, 8, EOS, M, M, M]
    assert out["position_ids"][0] == [0, 1, 2, 3, 4, 5, 6, 0, 0, 0]
    assert out["attention_mask"][0] == [1] * 10
    assert "packing_params" not in out


def test_packed_sft_neat_packing_marks_examples():
    options = ProcessingOptions(cutoff_len=11, packing=True, neat_packing=True)
    processor = PackedSupervisedProcessor(FakeTemplate(), FakeTokenizer(), options)
    rows = [row([user("5")], [assistant("6")]), row([user("7")], [assistant("8 9")])]  # 5 and 6 tokens
    out = processor(batch(*rows))
    assert out["input_ids"] == [[USER, 7, ASSISTANT_START, 8, 9, EOS, USER, 5, ASSISTANT_START, 6, EOS, 0]]
    assert out["attention_mask"] == [[1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0]]
    assert out["position_ids"] == [[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 0]]
    assert out["packing_params"][0]["sequence_boundaries"] == [0, 6, 11, 12]
    assert out["packing_params"][0]["right_padding_length"] == 1
    assert set(processor.features) == set(out)


def test_pretrain_packing_concatenates_and_blocks():
    processor = PretrainProcessor(None, FakeTokenizer(), ProcessingOptions(cutoff_len=4, packing=True))
    out = processor(batch(row([user("5 6 7")], []), row([user("8 9")], []), row([user("10 11 12")], [])))
    # Stream: 5 6 7 eos 8 9 eos 10 11 12 eos (11 tokens) -> two blocks of 4, the remainder is dropped.
    assert out["input_ids"] == [[5, 6, 7, EOS], [8, 9, EOS, 10]]
    assert out["attention_mask"] == [[1] * 4] * 2
    assert set(out) == {"input_ids", "attention_mask"}


def test_pretrain_packing_with_bos_overwrites_block_start():
    processor = PretrainProcessor(None, FakeTokenizer(add_bos_token=True), ProcessingOptions(4, packing=True))
    out = processor(batch(row([user("5 6 7")], []), row([user("8 9")], [])))
    assert out["input_ids"] == [[BOS, 6, 7, EOS]]


def test_pretrain_without_packing_truncates_each_document():
    processor = PretrainProcessor(None, FakeTokenizer(add_bos_token=True), ProcessingOptions(cutoff_len=3))
    out = processor(batch(row([user("5 6 7")], []), row([user("8")], [])))
    assert out["input_ids"] == [[BOS, 5, 6], [BOS, 8, EOS]]


def test_pretrain_llama3_ends_with_end_of_text():
    processor = PretrainProcessor(None, FakeTokenizer(), ProcessingOptions(10, template_name="llama3"))
    assert processor.eos_text == "<|end_of_text|>"


def test_pairwise_shares_prompt_and_truncates_answers_alike():
    processor = PairwiseProcessor(FakeTemplate(), FakeTokenizer(), ProcessingOptions(cutoff_len=8))
    rows = [row([user("5 6")], [assistant("7"), assistant("8 9 10 11 12")])]
    out = processor(batch(*rows))
    # Prompt 4 tokens; longer answer 6 tokens (long), prompt 4 (long) -> int(8 * 6/10) = 4 answer tokens.
    assert out["chosen_input_ids"] == [[USER, 5, 6, ASSISTANT_START, 7, EOS]]
    assert out["chosen_labels"] == [[M, M, M, M, 7, EOS]]
    assert out["rejected_input_ids"] == [[USER, 5, 6, ASSISTANT_START, 8, 9, 10, 11]]
    assert out["rejected_labels"] == [[M, M, M, M, 8, 9, 10, 11]]
    assert out["chosen_attention_mask"] == [[1] * 6]


def test_pairwise_efficient_eos_appends_eos_to_answers():
    processor = PairwiseProcessor(FakeTemplate(efficient_eos=True), FakeTokenizer(), ProcessingOptions(50))
    out = processor(batch(row([user("5")], [assistant("7"), assistant("8")])))
    assert out["chosen_input_ids"] == [[USER, 5, ASSISTANT_START, 7, EOS]]
    assert out["rejected_labels"] == [[M, M, M, 8, EOS]]


def test_kto_tags_and_mismatched_kl_examples():
    empty = {"role": "assistant", "content": ""}
    rows = [row([user("5")], [assistant("6"), empty]),      # desirable
            row([user("7")], [empty, assistant("8")]),      # undesirable
            row([user("9")], [assistant("10"), empty])]
    processor = KTOProcessor(FakeTemplate(), FakeTokenizer(), ProcessingOptions(cutoff_len=50))
    out = processor(batch(*rows))
    assert out["kto_tags"] == [True, False, True]
    assert out["input_ids"] == [[USER, 5, ASSISTANT_START, 6, EOS], [USER, 7, ASSISTANT_START, 8, EOS],
                                [USER, 9, ASSISTANT_START, 10, EOS]]
    # Each prompt is paired with the previous row's answer; the first with the last row's.
    assert out["kl_input_ids"] == [[USER, 5, ASSISTANT_START, 10, EOS], [USER, 7, ASSISTANT_START, 6, EOS],
                                   [USER, 9, ASSISTANT_START, 8, EOS]]
    assert out["kl_labels"][0] == [M, M, M, 10, EOS]


def test_unsupervised_keeps_prompt_and_answer_apart():
    processor = UnsupervisedProcessor(FakeTemplate(), FakeTokenizer(), ProcessingOptions(cutoff_len=50))
    out = processor(batch(row([user("5")], [assistant("6 7")]), row([user("8")], [])))
    assert out["input_ids"] == [[USER, 5, ASSISTANT_START], [USER, 8, ASSISTANT_START]]
    assert out["labels"] == [[6, 7, EOS], [EOS]]  # no response: an empty answer


@pytest.mark.parametrize("stage, options, do_generate, expected", [
    ("pt", {}, False, PretrainProcessor),
    ("sft", {}, False, SupervisedProcessor),
    ("sft", {"packing": True}, False, PackedSupervisedProcessor),
    ("sft", {}, True, UnsupervisedProcessor),
    ("rm", {}, False, PairwiseProcessor),
    ("dpo", {}, False, PairwiseProcessor),
    ("kto", {}, False, KTOProcessor),
    ("ppo", {}, False, UnsupervisedProcessor),
])
def test_get_processor_picks_the_stage_processor(stage, options, do_generate, expected):
    processor = get_processor(stage, FakeTemplate(), FakeTokenizer(), ProcessingOptions(10, **options), do_generate)
    assert type(processor) is expected


def test_processors_output_matches_declared_features():
    rows = [row([user("5")], [assistant("6"), assistant("7")])]
    for processor_class in (SupervisedProcessor, PairwiseProcessor, UnsupervisedProcessor):
        processor = processor_class(FakeTemplate(), FakeTokenizer(), ProcessingOptions(10))
        data = rows if processor_class is PairwiseProcessor else [row([user("5")], [assistant("6")])]
        assert set(processor(batch(*data))) == set(processor.features)
