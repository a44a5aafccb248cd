"""QLoRA: bnb 4/8-bit and HQQ quantize the base weights on CPU, LoRA trains on top and the loss falls;
everything that cannot run (eetq on CPU, wrong bit widths, full/freeze on quantized weights, missing
libraries for pre-quantized checkpoints) is refused before any weights load."""

import json
import shutil

import pytest
from test_train_recipes import _losses, run_recipe

import tuneforge.train.trainer as trainer_module
from tuneforge.errors import ConfigError
from tuneforge.model.loader import preflight_model
from tuneforge.model.quantization import patch_bnb_layers, quantized_layer_kind, quantized_linear_layers
from tuneforge.testing.tiny_model import tiny_config
from tuneforge.train.memory_estimate import report_memory_estimate, weight_bytes

LINEAR_LAYERS = 2 * 7  # q k v o gate up down in each of the tiny model's two layers
QLORA_RUNS = {
    "bnb-nf4": dict(quantization_method="bnb", quantization_bit=4, quantization_type="nf4"),
    "bnb-int8": dict(quantization_method="bnb", quantization_bit=8),
    "hqq-4": dict(quantization_method="hqq", quantization_bit=4),
}


memory_estimates = {}  # run name -> the MemoryEstimate printed before its training


@pytest.fixture(scope="module")
def qlora_runs(tiny_llama_dir, tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            output_dir = tmp_path_factory.mktemp(name)
            estimates = []

            def spy(model, cfg, args):
                estimates.append(report_memory_estimate(model, cfg, args))

            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(trainer_module, "report_memory_estimate", spy)
                _, trainer = run_recipe("sft", tiny_llama_dir, output_dir, finetuning_type="lora", learning_rate=2e-2,
                                        max_steps=20, **QLORA_RUNS[name])
            cache[name] = output_dir, trainer.model
            memory_estimates[name] = estimates[0]
        return cache[name]

    return get


def _quantized_kinds(model):
    return [quantized_layer_kind(layer) for layer in quantized_linear_layers(model)]


@pytest.mark.parametrize("name, kind", [("bnb-nf4", "Linear4bit"), ("bnb-int8", "Linear8bitLt"),
                                        ("hqq-4", "HQQLinear")])
def test_qlora_trains_lora_on_quantized_linear_layers(qlora_runs, name, kind):
    output_dir, model = qlora_runs(name)
    assert _quantized_kinds(model) == [kind] * LINEAR_LAYERS
    # Every quantized layer carries a LoRA adapter whose B matrix (initialised to zero) has trained.
    wrappers = [module for module in model.modules() if hasattr(module, "base_layer")]
    assert len(wrappers) == LINEAR_LAYERS
    assert all(module.lora_B["default"].weight.abs().sum() > 0 for module in wrappers)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    losses = _losses(output_dir)
    assert losses[-1] < 0.5 * losses[0], losses


def test_bnb_4bit_settings_reach_the_weights(qlora_runs, tiny_llama_dir, tmp_path):
    from transformers import AutoTokenizer

    from tuneforge.model.loader import load_model

    _, nf4 = qlora_runs("bnb-nf4")
    fp4 = load_model(tiny_config(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path), quantization_bit=4,
                                 quantization_type="fp4", double_quantization=False),
                     AutoTokenizer.from_pretrained(str(tiny_llama_dir)))
    nf4_state = quantized_linear_layers(nf4)[0].weight.quant_state
    fp4_state = quantized_linear_layers(fp4)[0].weight.quant_state
    assert (nf4_state.quant_type, nf4_state.nested) == ("nf4", True)  # double_quantization defaults to true
    assert (fp4_state.quant_type, fp4_state.nested) == ("fp4", False)


def test_hqq_bit_width_reaches_the_layers(qlora_runs):
    _, model = qlora_runs("hqq-4")
    assert {layer.meta["nbits"] for layer in quantized_linear_layers(model)} == {4}


@pytest.mark.parametrize("name, low, high", [("bnb-int8", 0.25, 0.27), ("bnb-nf4", 0.125, 0.14),
                                            ("hqq-4", 0.125, 0.16)])
def test_memory_estimate_counts_the_quantized_weights(qlora_runs, tiny_llama_dir, name, low, high):
    """The printed estimate's weights: the linear layers shrink to ~bits/32 of fp32 (plus scales)."""
    from transformers import AutoModelForCausalLM

    _, model = qlora_runs(name)
    fp32 = weight_bytes(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)))
    linear = 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128) * 4  # fp32 bytes of the tiny model's linear layers
    lora = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    quantized_linear = memory_estimates[name].weights - lora - (fp32 - linear) - _code_table_bytes(model)
    assert low <= quantized_linear / linear <= high, quantized_linear / linear


def _code_table_bytes(model):
    """bitsandbytes 4-bit lookup tables (256 floats per quantization state). The estimate counts them; some
    bitsandbytes CPU builds give every layer its own copy, others share one, so they are left out of the ratio."""
    tables = {}
    for parameter in model.parameters():
        state = getattr(parameter, "quant_state", None)
        while state is not None:
            code = getattr(state, "code", None)
            if code is not None:
                tables[code.untyped_storage().data_ptr()] = code.numel() * code.element_size()
            state = getattr(state, "state2", None)
    return sum(tables.values())


def _preflight(tiny_llama_dir, **values):
    values.setdefault("finetuning_type", "lora")
    preflight_model(tiny_config(model_name_or_path=str(tiny_llama_dir), **values))


@pytest.mark.parametrize("values, message", [
    (dict(quantization_method="eetq", quantization_bit=8),
     r"quantization_method: eetq needs a CUDA GPU \(none is available here\) and the kernels package"),
    (dict(quantization_method="bnb", quantization_bit=3), "quantization_bit: bnb quantizes to 4, 8 bits, not 3"),
    (dict(quantization_method="hqq", quantization_bit=7), "quantization_bit: hqq quantizes to 1, 2, 3, 4, 5, 6, 8"),
    (dict(quantization_method="eetq", quantization_bit=4), "quantization_bit: eetq quantizes to 8 bits, not 4"),
    (dict(quantization_method="gptq", quantization_bit=4), "quantization_method: 'gptq' cannot quantize while "
                                                           "loading; use bnb, hqq or eetq"),
    (dict(quantization_method="hqq", quantization_bit=4, use_dora=True), "use_dora works on bitsandbytes-quantized models only"),
    (dict(quantization_method="bnb", quantization_bit=8, quantization_device_map="auto"),
     "quantization_device_map: auto works only with 4-bit bnb quantization"),
])
def test_what_cannot_run_is_refused_before_weights_load(tiny_llama_dir, values, message):
    with pytest.raises(ConfigError, match=message):
        _preflight(tiny_llama_dir, **values)


@pytest.mark.parametrize("method", ["full", "freeze"])
def test_quantization_bit_with_full_or_freeze_is_refused_as_in_llamafactory(tiny_llama_dir, method):
    with pytest.raises(ConfigError, match=f"quantization_bit only works with finetuning_type lora or oft "
                                          f"\\(it is '{method}'\\)"):
        tiny_config(model_name_or_path=str(tiny_llama_dir), finetuning_type=method, quantization_bit=4)


@pytest.fixture
def prequantized_dir(tiny_llama_dir, tmp_path):
    """The tiny model's config.json with a quantization_config, as a GPTQ/AWQ/AQLM/bnb checkpoint has."""
    def make(settings):
        path = tmp_path / settings["quant_method"]
        path.mkdir()
        shutil.copy(tiny_llama_dir / "config.json", path / "config.json")
        config = json.loads((path / "config.json").read_text())
        config["quantization_config"] = settings
        (path / "config.json").write_text(json.dumps(config))
        return path
    return make


@pytest.mark.parametrize("settings, package", [
    ({"quant_method": "gptq", "bits": 4}, "pip install optimum gptqmodel"),
    ({"quant_method": "awq", "bits": 4}, "pip install gptqmodel"),
    ({"quant_method": "aqlm", "nbits_per_codebook": 16}, r"pip install aqlm\[gpu,cpu\]"),
])
def test_prequantized_checkpoint_without_its_library_names_the_package(prequantized_dir, settings, package):
    with pytest.raises(ConfigError, match=f"the checkpoint is {settings['quant_method'].upper()}-quantized "
                                          f".*needs: {package}"):
        _preflight(prequantized_dir(settings))


@pytest.mark.parametrize("method", ["full", "freeze"])
def test_prequantized_checkpoint_refuses_full_and_freeze(prequantized_dir, method):
    path = prequantized_dir({"quant_method": "bitsandbytes", "load_in_4bit": True})
    with pytest.raises(ConfigError, match=f"finetuning_type: {method} cannot train quantized weights"):
        _preflight(path, finetuning_type=method)
    _preflight(path, finetuning_type="lora")  # LoRA on the pre-quantized weights is fine


def test_quantization_fails_before_the_data_is_read(tiny_llama_dir, tmp_path, monkeypatch):
    from tuneforge.train import run_train

    import tuneforge.train.stages.sft as sft

    broken = tmp_path / "rows.json"  # a dataset the name checks accept; reading it is refused below
    broken.write_text('[{"instruction": "hi", "output": "there"}]')

    def data_read(*args, **kwargs):
        raise AssertionError("the data was read before the hardware check")

    monkeypatch.setattr(sft, "get_dataset", data_read)
    with pytest.raises(ConfigError, match="quantization_method: eetq needs a CUDA GPU"):
        run_train(dict(model_name_or_path=str(tiny_llama_dir), output_dir=str(tmp_path / "out"), do_train=True,
                       dataset=str(broken), quantization_method="eetq", quantization_bit=8))


# --- bnb QLoRA / QDoRA on a model with linear biases (Qwen2's q/k/v) and without (llama) ----------------

BIASED_LAYERS = 2 * 3  # q k v in each of the tiny Qwen2's two layers


# llama with plain LoRA: test_qlora_trains_lora_on_quantized_linear_layers
@pytest.mark.parametrize("arch, bits, dora", [("qwen2", 4, False), ("qwen2", 8, False), ("qwen2", 4, True),
                                              ("qwen2", 8, True), ("llama", 4, True), ("llama", 8, True)])
def test_bnb_qlora_and_qdora_train_with_and_without_linear_biases(arch, bits, dora, request, tmp_path):
    """bitsandbytes alone fails here: 4-bit with a bias in the first backward (in-place bias add), 8-bit
    DoRA on CPU in the second forward (scales lost); patch_bnb_layers fixes both (model/quantization.py)."""
    model_dir = request.getfixturevalue("tiny_qwen2_dir" if arch == "qwen2" else "tiny_llama_dir")
    _, trainer = run_recipe("sft", model_dir, tmp_path, finetuning_type="lora", learning_rate=2e-2, max_steps=10,
                            logging_steps=1, save_steps=100, quantization_method="bnb", quantization_bit=bits,
                            use_dora=dora)
    layers = quantized_linear_layers(trainer.model)
    kind = "Linear4bit" if bits == 4 else "Linear8bitLt"
    assert [quantized_layer_kind(layer) for layer in layers] == [kind] * LINEAR_LAYERS
    assert sum(layer.bias is not None for layer in layers) == (BIASED_LAYERS if arch == "qwen2" else 0)
    losses = _losses(tmp_path)
    assert len(losses) == 10
    assert losses[-1] < 0.8 * losses[0], losses


def test_a_patched_4bit_layer_keeps_the_bias_out_of_bitsandbytes_and_gives_the_same_output(monkeypatch):
    import bitsandbytes as bnb
    import torch

    torch.manual_seed(0)
    dense = torch.nn.Linear(64, 32)
    layer = bnb.nn.Linear4bit(64, 32, bias=True, compute_dtype=torch.float32, quant_type="nf4")
    layer.load_state_dict(dense.state_dict())
    layer = layer.to("cpu")
    x = torch.randn(3, 64, requires_grad=True)
    expected = layer(x).detach()

    model = torch.nn.Sequential(layer)
    assert patch_bnb_layers(model) == 1
    assert isinstance(layer, bnb.nn.Linear4bit) and quantized_layer_kind(layer) == "Linear4bit"
    seen_biases = []
    matmul = bnb.matmul_4bit

    def spy(A, B, quant_state, out=None, bias=None):
        seen_biases.append(bias)
        return matmul(A, B, quant_state, out=out, bias=bias)

    monkeypatch.setattr(bnb, "matmul_4bit", spy)
    out = layer(x)
    assert seen_biases == [None]  # bitsandbytes never sees (and never adds in place) the bias
    assert torch.allclose(out, expected, atol=1e-6)
    out.sum().backward()
    assert torch.allclose(layer.bias.grad, torch.full((32,), 3.0))  # d(sum)/d(bias) = the batch size
    assert layer.bias is not None and "bias" in layer.state_dict()
