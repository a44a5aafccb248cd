"""mixture_of_depths: convert adds routers to every second layer; only the top 12.5% of tokens by router weight
go through a routed layer, the rest pass it unchanged; the router learns; a saved converted model loads back
(`load`) with the same outputs; wrong modes are refused before the weights load."""

import json

import pytest
import torch
from transformers import AutoTokenizer

from tuneforge.errors import ConfigError
from tuneforge.model.loader import load_model
from tuneforge.model.mixture_of_depths import select_tokens
from tuneforge.testing.tiny_model import tiny_config

LENGTH = 32  # 12.5% of 32 tokens: 4 go through each routed layer


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(str(tiny_llama_dir))


def _load(model_dir, tokenizer, tmp_path, mode, is_trainable=True):
    cfg = tiny_config(model_name_or_path=str(model_dir), output_dir=str(tmp_path / "out"), finetuning_type="full",
                      mixture_of_depths=mode)
    return load_model(cfg, tokenizer, is_trainable=is_trainable)


def _ids(batch=2):
    generator = torch.Generator().manual_seed(0)
    return torch.randint(5, 400, (batch, LENGTH), generator=generator)


def test_only_the_top_capacity_tokens_go_through_a_routed_layer(tiny_llama_dir, tokenizer, tmp_path):
    model = _load(tiny_llama_dir, tokenizer, tmp_path, "convert")
    layers = model.model.layers
    assert [hasattr(layer, "mod_router") for layer in layers] == [False, True]  # every second layer, from 1
    seen = {}
    layer = layers[1]
    layer.input_layernorm.register_forward_hook(lambda module, inputs, output: seen.update(attn_in=inputs[0]))
    layer.register_forward_hook(lambda module, inputs, output: seen.update(layer_in=inputs[0], layer_out=output))
    ids = _ids()
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    hidden_in, hidden_out = seen["layer_in"], seen["layer_out"]
    assert seen["attn_in"].shape == (2, 4, hidden_in.shape[-1])  # 4 of 32 tokens per row entered the block
    with torch.no_grad():
        weights = layer.mod_router(hidden_in).squeeze(-1)
    chosen = select_tokens(weights, 4)
    assert torch.equal(chosen, weights.topk(4, dim=1).indices.sort(dim=1).values)
    changed = (hidden_out - hidden_in).abs().amax(-1) > 0
    expected = torch.zeros_like(changed)
    expected.scatter_(1, chosen, True)
    assert torch.equal(changed, expected)  # exactly the routed tokens changed; the others skipped the layer


def test_the_router_is_trained_through_its_weights(tiny_llama_dir, tokenizer, tmp_path):
    model = _load(tiny_llama_dir, tokenizer, tmp_path, "convert")
    ids = _ids(1)
    model(input_ids=ids, labels=ids).loss.backward()
    router = model.model.layers[1].mod_router
    assert router.weight.requires_grad and router.weight.grad.abs().sum() > 0


def test_a_converted_model_saves_and_loads_back(tiny_llama_dir, tokenizer, tmp_path):
    model = _load(tiny_llama_dir, tokenizer, tmp_path, "convert")
    with torch.no_grad():
        model.model.layers[1].mod_router.weight.normal_()  # as if trained: not a fresh initialisation
    model.save_pretrained(tmp_path / "mod")
    tokenizer.save_pretrained(tmp_path / "mod")
    assert json.loads((tmp_path / "mod" / "config.json").read_text())["mixture_of_depths"] == {
        "capacity": 0.125, "layers": [1]}
    model.eval()
    ids = _ids()
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    loaded = _load(tmp_path / "mod", tokenizer, tmp_path, "load", is_trainable=False)
    torch.testing.assert_close(loaded.model.layers[1].mod_router.weight, model.model.layers[1].mod_router.weight)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, expected)
    generated = loaded.generate(input_ids=ids[:1, :8], max_new_tokens=3, do_sample=False)  # no KV cache
    assert generated.shape == (1, 11)
    with pytest.raises(ConfigError, match="mixture_of_depths: convert, but this model is converted already"):
        _load(tmp_path / "mod", tokenizer, tmp_path, "convert")


def test_load_on_a_plain_model_is_refused(tiny_llama_dir, tokenizer, tmp_path):
    with pytest.raises(ConfigError, match="mixture_of_depths: load needs a model converted to mixture-of-depths"):
        _load(tiny_llama_dir, tokenizer, tmp_path, "load")
