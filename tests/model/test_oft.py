"""OFT (`finetuning_type: oft`) through peft: only the orthogonal blocks train, the base stays frozen, the
loss falls, the saved adapter reloads with the same logits, merging equals the adapter's output, and QOFT
trains on bitsandbytes 4-/8-bit bases."""

import json

import pytest
import torch
from transformers import AutoTokenizer

from tuneforge.errors import ConfigError
from tuneforge.model import apply_finetuning
from tuneforge.model.loader import load_model
from tuneforge.testing.tiny_model import tiny_config

from test_train_recipes import _losses, run_recipe

LINEAR_LAYERS = 2 * 7  # q k v o gate up down in each of the tiny llama's two layers


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(str(tiny_llama_dir))


@pytest.fixture(scope="module")
def input_ids(tokenizer):
    return torch.tensor([tokenizer("User: Say hello.\nAssistant: Hello there!")["input_ids"]])


@pytest.fixture(scope="module")
def oft_run(tiny_llama_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("oft_run")
    _, trainer = run_recipe("sft", tiny_llama_dir, output_dir, finetuning_type="oft", oft_block_size=16,
                            learning_rate=1e-2, max_steps=8, logging_steps=1, save_steps=100)
    return output_dir, trainer


def _logits(model, input_ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def test_only_the_orthogonal_blocks_train_and_the_loss_falls(oft_run, tiny_llama_dir):
    output_dir, trainer = oft_run
    trainable = {name for name, param in trainer.model.named_parameters() if param.requires_grad}
    assert len(trainable) == LINEAR_LAYERS
    assert all(".oft_R.default." in name for name in trainable)
    # The base weights are the checkpoint's, untouched by 8 steps at lr 1e-2.
    from safetensors.torch import load_file
    original = load_file(str(tiny_llama_dir / "model.safetensors"))
    q_proj = trainer.model.base_model.model.model.layers[0].self_attn.q_proj
    assert torch.equal(q_proj.base_layer.weight.detach().cpu(), original["model.layers.0.self_attn.q_proj.weight"])
    losses = _losses(output_dir)
    assert len(losses) == 8 and losses[-1] < 0.7 * losses[0], losses
    saved = json.loads((output_dir / "adapter_config.json").read_text())
    assert (saved["peft_type"], saved["oft_block_size"], saved["r"]) == ("OFT", 16, 0)


def test_the_saved_adapter_reloads_and_merges_to_the_trained_logits(oft_run, tiny_llama_dir, tokenizer, input_ids,
                                                                  tmp_path):
    output_dir, trainer = oft_run
    trained = _logits(trainer.model, input_ids)
    base = load_model(tiny_config(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path)), tokenizer,
                      is_trainable=False)
    assert (_logits(base, input_ids) - trained).abs().max() > 1e-2  # training moved the outputs

    # Continuing training re-attaches the adapter unmerged; inference merges it into the base weights.
    settings = dict(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path), finetuning_type="oft",
                    adapter_name_or_path=str(output_dir))
    attached = load_model(tiny_config(**settings), tokenizer, is_trainable=True)
    assert type(attached).__name__ == "PeftModelForCausalLM"
    torch.testing.assert_close(_logits(attached, input_ids), trained, atol=1e-5, rtol=1e-5)
    merged = load_model(tiny_config(**settings), tokenizer, is_trainable=False)
    assert not any("oft_R" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(_logits(merged, input_ids), trained, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bits", [4, 8])
def test_qoft_trains_the_blocks_on_a_bitsandbytes_base(tiny_llama_dir, tokenizer, input_ids, tmp_path, bits):
    cfg = tiny_config(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path), finetuning_type="oft",
                      oft_block_size=16, quantization_method="bnb", quantization_bit=bits)
    model = load_model(cfg, tokenizer, is_trainable=True)
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer).__mro__[1 if bits == 8 else 0].__name__ == ("Linear4bit" if bits == 4
                                                                               else "Linear8bitLt")
    trainable = [param for param in model.parameters() if param.requires_grad]
    assert len(trainable) == LINEAR_LAYERS and all(param.dtype == torch.float32 for param in trainable)
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    losses = []
    for _ in range(4):
        loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_oft_starts_at_the_base_models_outputs(tiny_llama_dir, tokenizer, input_ids, tmp_path):
    base = load_model(tiny_config(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path)), tokenizer,
                      is_trainable=False)
    expected = _logits(base, input_ids)
    cfg = tiny_config(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path), finetuning_type="oft",
                      oft_rank=4, oft_block_size=0, oft_target="q_proj,v_proj", module_dropout=0.1)
    model = apply_finetuning(base, cfg, is_trainable=True)
    config = model.peft_config["default"]
    assert (config.r, config.oft_block_size, sorted(config.target_modules), config.module_dropout) == (
        4, 0, ["q_proj", "v_proj"], 0.1)
    torch.testing.assert_close(_logits(model, input_ids), expected)  # the rotation starts at the identity


@pytest.mark.parametrize("values, message", [
    (dict(oft_rank=4), "oft_rank (4) and oft_block_size (32): set exactly one of them"),
    (dict(oft_block_size=0), "oft_rank (0) and oft_block_size (0): set exactly one of them"),
    (dict(module_dropout=1.5), "module_dropout (1.5) is a probability"),
])
def test_bad_oft_sizes_are_refused_before_weights_load(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny_config(model_name_or_path="x", finetuning_type="oft", **values)


def test_a_target_the_model_lacks_names_the_oft_key(tiny_llama_dir, tokenizer, tmp_path):
    cfg = tiny_config(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path), finetuning_type="oft",
                      oft_target="qkv_proj")
    with pytest.raises(ConfigError, match="oft_target: module 'qkv_proj' is not in the model"):
        load_model(cfg, tokenizer, is_trainable=True)



def test_a_block_size_that_does_not_divide_a_layer_is_moved_and_logged_per_layer(tiny_llama_dir, tokenizer,
                                                                                tmp_path, caplog):
    # The tiny llama's layers are 64 wide (q k v o gate up) and 128 wide (down_proj): 100 divides neither.
    cfg = tiny_config(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path), finetuning_type="oft",
                      oft_block_size=100)
    with caplog.at_level("WARNING", logger="tuneforge.model.adapters.oft"):
        model = load_model(cfg, tokenizer, is_trainable=True)
    used = {name.split(".")[-1]: module.oft_block_size["default"] for name, module in model.named_modules()
            if isinstance(getattr(module, "oft_block_size", None), dict)}
    assert used["q_proj"] == 64 and used["down_proj"] == 128  # peft's nearest divisors
    warnings = [record.getMessage() for record in caplog.records if "oft_block_size: 100" in record.getMessage()]
    assert warnings == [
        "oft_block_size: 100 does not divide the input width 64 of 12 layer(s) (model.layers.0.self_attn.q_proj, "
        "model.layers.0.self_attn.k_proj, model.layers.0.self_attn.v_proj, model.layers.0.self_attn.o_proj and 8 "
        "more); peft uses block size 64 there. Set oft_block_size to a divisor of every targeted layer's input "
        "width to train exactly the size you ask for.",
        "oft_block_size: 100 does not divide the input width 128 of 2 layer(s) (model.layers.0.mlp.down_proj, "
        "model.layers.1.mlp.down_proj); peft uses block size 128 there. Set oft_block_size to a divisor of every "
        "targeted layer's input width to train exactly the size you ask for.",
    ]


def test_a_block_size_that_divides_every_layer_logs_nothing(tiny_llama_dir, tokenizer, tmp_path, caplog):
    cfg = tiny_config(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path), finetuning_type="oft",
                      oft_block_size=16, oft_target="q_proj")
    with caplog.at_level("WARNING", logger="tuneforge.model.adapters.oft"):
        load_model(cfg, tokenizer, is_trainable=True)
    assert not [record for record in caplog.records if "does not divide" in record.getMessage()]
