"""Sequence parallelism: 2 gloo processes, each holding half of every sequence, give the one-process loss
and (summed over the ranks) the one-process gradients, on the tiny llama and the tiny Qwen2."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tuneforge.errors import ConfigError
from tuneforge.train.launch import sequence_parallel as sp

PAD = 0


def _batch():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 200, (2, 11), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    input_ids[1, 7:], attention_mask[1, 7:] = PAD, 0  # right padding: row 2 is 7 tokens long
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, :2] = -100  # a prompt that is not trained on
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _load(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")


def _worker(rank, model_dir, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = _load(model_dir)
    sp.enable(model)
    loss = sp.sharded_loss(model, _batch(), PAD)
    loss.backward()
    total = loss.detach().clone()
    dist.all_reduce(total)
    grads = {name: param.grad.clone() for name, param in model.named_parameters()}
    for grad in grads.values():
        dist.all_reduce(grad)
    if rank == 0:
        torch.save({"loss": total, "grads": grads, "attention": model.config._attn_implementation}, result_file)
    dist.destroy_process_group()


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_two_ranks_give_the_one_process_loss_and_gradients(arch, tiny_llama_dir, tiny_qwen2_dir, tmp_path):
    model_dir = str(tiny_llama_dir if arch == "llama" else tiny_qwen2_dir)
    model = _load(model_dir)
    batch = _batch()
    loss = model(**batch, use_cache=False).loss
    loss.backward()

    result_file = tmp_path / "sp.pt"
    mp.start_processes(_worker, args=(model_dir, str(tmp_path / "init"), str(result_file)), nprocs=2,
                       start_method="fork")
    result = torch.load(result_file)
    assert result["attention"] == "ulysses_sdpa"
    assert float(result["loss"]) == pytest.approx(loss.item(), rel=1e-5)
    assert loss.item() > 1.0  # a real loss, not an empty shard
    for name, param in model.named_parameters():
        torch.testing.assert_close(result["grads"][name], param.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_labels_are_shifted_over_the_whole_sequence_before_it_is_split():
    batch = {"input_ids": torch.tensor([[11, 12, 13, 14, 15]]), "labels": torch.tensor([[-100, 12, 13, 14, 15]])}
    first, second = (sp.shard_batch(batch, rank, 2, pad_token_id=PAD) for rank in (0, 1))
    # padded to 6 tokens; shard 0's last token (13) predicts shard 1's first (14)
    assert first["input_ids"].tolist() == [[11, 12, 13]] and second["input_ids"].tolist() == [[14, 15, PAD]]
    assert first["shift_labels"].tolist() == [[12, 13, 14]] and second["shift_labels"].tolist() == [[15, -100, -100]]
    assert first["position_ids"].tolist() == [[0, 1, 2]] and second["position_ids"].tolist() == [[3, 4, 5]]
    assert int(first["num_items_in_batch"]) == int(second["num_items_in_batch"]) == 4


def test_head_counts_that_cannot_be_split_are_refused():
    from transformers import LlamaConfig

    with pytest.raises(ConfigError, match="sequence_parallel_size: 3 does not divide the model's 4 attention heads"):
        sp.check_model(LlamaConfig(num_attention_heads=4, num_key_value_heads=2), 3)
    with pytest.raises(ConfigError, match="4 and the model's 6 key/value heads"):
        sp.check_model(LlamaConfig(hidden_size=48, num_attention_heads=12, num_key_value_heads=6), 4)
    sp.check_model(LlamaConfig(num_attention_heads=4, num_key_value_heads=1), 2)  # kv heads repeated


def test_a_training_run_gets_deepspeeds_ulysses_through_parallelism_config():
    from tuneforge.config import make_config

    cfg = make_config({"sequence_parallel_size": 2, "deepspeed": '{"zero_optimization": {"stage": 2}}'})
    config = sp.parallelism_config(cfg.train, cfg.model, "sft", world_size=2)
    assert (config.sp_size, config.sp_backend) == (2, "deepspeed")
    assert config.sp_handler.sp_attn_implementation == "sdpa" and config.sp_handler.sp_seq_length_is_variable


def test_what_sequence_parallelism_cannot_run_is_refused_with_the_key():
    from tuneforge.config import make_config

    cfg = make_config({"sequence_parallel_size": 2, "flash_attn": "disabled"})
    with pytest.raises(ConfigError) as error:
        sp.parallelism_config(cfg.train, cfg.model, "dpo", world_size=3)
    assert error.value.problems == [
        "sequence_parallel_size runs on DeepSpeed's Ulysses sequence parallelism (through accelerate); add "
        "`deepspeed:` with a ZeRO config (any stage, e.g. ds_z2_config.json).",
        "sequence_parallel_size: 2 must divide the number of processes (3); launch with NPROC_PER_NODE=2 (or a "
        "multiple).",
        "sequence_parallel_size: stage dpo is not supported (its trainer computes its own loss over whole rows); "
        "sequence parallelism trains stages pt, sft.",
        "sequence_parallel_size: flash_attn disabled (eager attention) cannot run sequence-parallel; use "
        "flash_attn: sdpa (or fa2 on GPUs)."]


def test_batches_get_position_ids_and_are_padded_to_split_evenly():
    def collator(features):
        return {"input_ids": torch.tensor([[5, 6, 7], [8, 9, 0]]),
                "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
                "labels": torch.tensor([[-100, 6, 7], [-100, 9, -100]])}

    from tuneforge.config import make_config

    assert sp.shardable_batches(collator, make_config({}).train) is collator  # off: unchanged
    batch = sp.shardable_batches(collator, make_config({"sequence_parallel_size": 2}).train)([])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [8, 9, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100], [-100, 9, -100, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
