"""ZeRO-3 code paths with the partitioning faked: each parameter an empty placeholder carrying DeepSpeed's
`ds_id` / `ds_shape` / `ds_numel` / `ds_tensor` (what zero.Init leaves on a rank), and DeepSpeed's calls
replaced by recorders. The same paths ran for real with 2 CPU ranks (see docs/distributed.md)."""

import contextlib
import sys
import types

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.config import make_config
from tuneforge.errors import ConfigError
from tuneforge.model import partitioned
from tuneforge.model.adapters import count_parameters
from tuneforge.model.value_head import VALUE_HEAD_FILE, ValueHeadModel
from tuneforge.model.vocab import resize_embeddings
from tuneforge.train.batching.padding_free import shared_reason
from tuneforge.train.preference import reference
from tuneforge.train.run.divergence import first_nonfinite_parameter


def _partition(model, rank_slice=2):
    """Replace every parameter by a ZeRO-3 placeholder; this rank keeps the first `rank_slice` values."""
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            placeholder = torch.nn.Parameter(torch.empty(0, dtype=param.dtype), requires_grad=param.requires_grad)
            placeholder.ds_id, placeholder.ds_shape, placeholder.ds_numel = id(param), param.shape, param.numel()
            placeholder.ds_tensor = param.detach().reshape(-1)[:rank_slice].clone()
            setattr(module, name, placeholder)
    return model


@pytest.fixture
def zero3_model(tiny_llama_dir):
    return _partition(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)))


def test_full_shapes_and_counts_come_from_deepspeed_not_the_empty_placeholders(zero3_model, tiny_llama_dir):
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    embedding = zero3_model.get_input_embeddings().weight
    assert embedding.shape == (0,) and partitioned.is_partitioned(embedding)
    assert partitioned.full_shape(embedding) == plain.get_input_embeddings().weight.shape
    assert count_parameters(zero3_model) == count_parameters(plain) != (0, 0)


def test_the_vocabulary_check_reads_the_partitioned_embedding_rows(zero3_model, tiny_llama_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    rows = partitioned.full_shape(zero3_model.get_input_embeddings().weight)[0]
    assert resize_embeddings(zero3_model, tokenizer, make_config({}).model) == 0  # was: "only 0 rows"
    tokenizer.add_tokens(["<new_a>", "<new_b>"])
    with pytest.raises(ConfigError, match=f"the tokenizer has {rows + 2} tokens but the model's embedding matrix "
                                          f"has only {rows} rows"):
        resize_embeddings(zero3_model, tokenizer, make_config({}).model)


def test_gathered_hands_only_partitioned_parameters_to_deepspeed(monkeypatch):
    calls = []

    @contextlib.contextmanager
    def gathered_parameters(params, modifier_rank=None):
        calls.append(([tuple(p.ds_shape) for p in params], modifier_rank))
        yield

    fake = types.SimpleNamespace(zero=types.SimpleNamespace(GatheredParameters=gathered_parameters))
    monkeypatch.setitem(sys.modules, "deepspeed", fake)
    plain = torch.nn.Parameter(torch.ones(2))
    split = torch.nn.Parameter(torch.empty(0))
    split.ds_id, split.ds_shape = 1, (3, 4)
    with partitioned.gathered([plain, None, split], modifier_rank=0):
        pass
    with partitioned.gathered([plain]):  # nothing partitioned: DeepSpeed is not asked
        pass
    assert calls == [([(3, 4)], 0)]


def test_the_divergence_guard_reads_each_ranks_slice(zero3_model):
    assert first_nonfinite_parameter(zero3_model) is None
    name, param = next((n, p) for n, p in zero3_model.named_parameters() if "layers.1" in n)
    param.ds_tensor[0] = float("nan")
    assert first_nonfinite_parameter(zero3_model) == name


def test_padding_free_is_off_for_partitioned_weights(zero3_model):
    assert shared_reason(zero3_model, make_config({})) == (
        "DeepSpeed ZeRO-3 partitions the weights, so the check batch cannot run before the engine starts")


def test_the_reward_model_saves_the_gathered_weights_it_is_given(tiny_llama_dir, tmp_path):
    model = ValueHeadModel(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)), dropout=0.0)
    gathered = {name: tensor + 1.0 for name, tensor in model.state_dict().items()}  # what DeepSpeed hands over
    _partition(model)
    model.save_pretrained(str(tmp_path), state_dict=gathered)
    weights = load_file(tmp_path / "model.safetensors")
    key = "model.embed_tokens.weight"
    torch.testing.assert_close(weights[key], gathered[f"pretrained_model.{key}"])
    head = load_file(tmp_path / VALUE_HEAD_FILE)
    torch.testing.assert_close(head["v_head.summary.weight"], gathered["v_head.summary.weight"])
    assert head["v_head.summary.weight"].shape == (1, model.config.hidden_size)


def test_the_reference_model_gets_an_optimizer_free_engine_under_zero3(monkeypatch):
    import transformers.integrations.deepspeed as hf_deepspeed

    model = torch.nn.Linear(2, 2)
    assert reference.zero3_engine(model) is model  # no ZeRO-3: unchanged
    started = {}

    class Engine(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    def initialize(model, config):
        started.update(config=config)
        return Engine(model), None, None, None

    run_config = {"zero_optimization": {"stage": 3}, "optimizer": {"type": "AdamW"}, "train_batch_size": 4}
    monkeypatch.setattr(hf_deepspeed, "is_deepspeed_zero3_enabled", lambda: True)
    monkeypatch.setattr(hf_deepspeed, "deepspeed_config", lambda: run_config)
    monkeypatch.setitem(sys.modules, "deepspeed", types.SimpleNamespace(initialize=initialize))
    engine = reference.zero3_engine(model)
    assert isinstance(engine, Engine) and engine.module is model and not engine.training
    assert started["config"] == {"zero_optimization": {"stage": 3}, "train_batch_size": 4}


def test_deepspeed_adopts_the_gloo_group_before_the_weights_load(monkeypatch):
    from tuneforge.train.launch import distributed

    calls = []
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setitem(sys.modules, "deepspeed", types.SimpleNamespace(
        init_distributed=lambda **kwargs: calls.append(kwargs)))
    distributed.open_cpu_process_group("gloo", 90)
    assert calls == []
    distributed.open_cpu_process_group("gloo", 90, deepspeed=True)
    assert [call["dist_backend"] for call in calls] == ["gloo"] and calls[0]["timeout"].total_seconds() == 90


def test_the_memory_estimate_counts_this_ranks_partition(zero3_model):
    from tuneforge.train.memory_estimate import weight_bytes

    slices = sum(param.ds_tensor.numel() * param.ds_tensor.element_size() for param in zero3_model.parameters())
    buffers = sum(buffer.numel() * buffer.element_size() for buffer in zero3_model.buffers())
    assert slices > 0 and weight_bytes(zero3_model) == slices + buffers
