"""`tuneforge export`: two stacked LoRA adapters merged into the base give the logits of base + adapters in plain
transformers; shards, .bin legacy files, tokenizer (chat template), Modelfile and GGUF all load back; bad
configs stop before any weights load."""

import importlib.util
import json

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge import cli
from tuneforge.config import make_config
from tuneforge.errors import ConfigError, UserError
from tuneforge.export import run_export
from tuneforge.export.gguf_file import reorder_for_ggml_rope, write_gguf
from tuneforge.export.hub import push_to_hub
from tuneforge.export.save import save_weights
from tuneforge.testing.tiny_model import build_tiny_model
from shared_paths import LF_EXAMPLES

IDS = torch.tensor([[5, 17, 42, 99, 7, 3]])


def _random_adapter(model_dir, out_dir, seed):
    """A LoRA adapter with random (non-zero) B matrices, so merging it changes the logits."""
    from peft import LoraConfig, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(seed)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                                 init_lora_weights=False))
    peft_model.save_pretrained(out_dir)


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_llama_dir):
    """Two random adapters of the shared tiny llama, and a tiny qwen2 with tied embeddings."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("export")
    build_tiny_model(folder / "qwen2", arch="qwen2", tie_word_embeddings=True)
    _random_adapter(tiny_llama_dir, folder / "adapter1", seed=1)
    _random_adapter(tiny_llama_dir, folder / "adapter2", seed=2)
    return folder


@pytest.fixture(scope="module")
def exported(tiny, tiny_llama_dir):
    """`tuneforge export cfg.yaml` with two adapters and an f32 GGUF."""
    cfg = {"model_name_or_path": str(tiny_llama_dir), "template": "qwen", "finetuning_type": "lora",
           "adapter_name_or_path": f"{tiny / 'adapter1'},{tiny / 'adapter2'}", "export_dir": str(tiny / "out"),
           "export_size": 1, "export_device": "cpu", "export_legacy_format": False, "export_gguf": "f32"}
    path = tiny / "export.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli.main(["export", str(path)]) == 0
    return tiny / "out"


def test_merged_model_gives_base_plus_adapters_logits(tiny, tiny_llama_dir, exported):
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    reference = PeftModel.from_pretrained(base, tiny / "adapter1").merge_and_unload()
    reference = PeftModel.from_pretrained(reference, tiny / "adapter2")  # the last one applied unmerged
    merged = AutoModelForCausalLM.from_pretrained(exported)
    assert not torch.allclose(_logits(merged), _logits(AutoModelForCausalLM.from_pretrained(tiny_llama_dir)))
    torch.testing.assert_close(_logits(merged), _logits(reference), atol=1e-5, rtol=1e-5)
    assert sorted(p.name for p in exported.glob("*.safetensors")) == ["model.safetensors"]


def test_tokenizer_keeps_the_chat_template_and_modelfile_uses_it(exported):
    tokenizer = AutoTokenizer.from_pretrained(exported)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert text == ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                    "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.padding_side == "left"
    modelfile = (exported / "Modelfile").read_text()
    assert "FROM ./model-f32.gguf\n" in modelfile  # Ollama imports the GGUF written beside it
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "{{ .Content }}<|im_end|>" in modelfile


def test_gguf_holds_the_merged_weights_and_the_vocabulary(exported):
    from gguf import GGUFReader

    reader = GGUFReader(exported / "model-f32.gguf")
    field = reader.fields["general.architecture"]
    assert bytes(field.parts[field.data[0]]).decode() == "llama"
    merged = AutoModelForCausalLM.from_pretrained(exported)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    assert len(tensors) == 2 * 9 + 3  # 9 per block, token_embd + output_norm + output (not tied)
    q = torch.from_numpy(np.array(tensors["blk.1.attn_q.weight"].data))
    expected_q = reorder_for_ggml_rope(merged.model.layers[1].self_attn.q_proj.weight, 4)
    torch.testing.assert_close(q, expected_q.detach(), atol=0, rtol=0)
    k = torch.from_numpy(np.array(tensors["blk.0.attn_k.weight"].data))
    torch.testing.assert_close(k, reorder_for_ggml_rope(merged.model.layers[0].self_attn.k_proj.weight, 2).detach())
    down = torch.from_numpy(np.array(tensors["blk.0.ffn_down.weight"].data))
    torch.testing.assert_close(down, merged.model.layers[0].mlp.down_proj.weight.detach(), atol=0, rtol=0)
    tokenizer = AutoTokenizer.from_pretrained(exported)
    tokens_field = reader.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(tokens_field.parts[i]).decode() for i in tokens_field.data]
    assert tokens == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    eos = reader.fields["tokenizer.ggml.eos_token_id"]
    assert int(eos.parts[eos.data[0]][0]) == tokenizer.convert_tokens_to_ids("<|im_end|>")
    template = reader.fields["tokenizer.chat_template"]
    assert bytes(template.parts[template.data[0]]).decode() == tokenizer.chat_template


def test_rope_reorder_interleaves_the_two_halves_of_each_head():
    rows = torch.arange(8.0).reshape(8, 1)  # 2 heads x 4 rows: halves [0,1 | 2,3] and [4,5 | 6,7]
    assert reorder_for_ggml_rope(rows, 2).flatten().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_qwen2_gguf_f16_and_q8_0_with_biases_and_tied_head(tiny, tmp_path):
    from gguf import GGMLQuantizationType, GGUFReader
    from gguf.quants import dequantize

    model = AutoModelForCausalLM.from_pretrained(tiny / "qwen2")
    AutoTokenizer.from_pretrained(tiny / "qwen2").save_pretrained(tmp_path)
    for kind, weight_type in (("f16", GGMLQuantizationType.F16), ("q8_0", GGMLQuantizationType.Q8_0)):
        reader = GGUFReader(write_gguf(model, str(tmp_path), kind))
        tensors = {tensor.name: tensor for tensor in reader.tensors}
        assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
        assert tensors["blk.0.attn_q.bias"].tensor_type == GGMLQuantizationType.F32
        assert tensors["blk.0.attn_q.weight"].tensor_type == weight_type
        # qwen2 keeps HF's row order (NeoX RoPE in GGML); q8_0 keeps each weight to within a block's step.
        q = np.array(tensors["blk.0.attn_q.weight"].data)
        if kind == "q8_0":
            q = dequantize(q, weight_type)
        weight = model.model.layers[0].self_attn.q_proj.weight.detach().numpy()
        tolerance = 2e-3 if kind == "f16" else np.abs(weight).max() / 127  # q8_0: one step of the coarsest block
        np.testing.assert_allclose(q.astype(np.float32).reshape(weight.shape), weight, atol=tolerance, rtol=1e-3)
        bias = np.array(tensors["blk.0.attn_q.bias"].data)
        np.testing.assert_array_equal(bias, model.model.layers[0].self_attn.q_proj.bias.detach().numpy())


@pytest.mark.parametrize("legacy", [False, True])
def test_small_shards_and_legacy_bin_files_load_back(tiny_llama_dir, tmp_path, legacy):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    files = save_weights(model, str(tmp_path), "150KB", legacy_format=legacy)
    assert len(files) > 2 and all(name.endswith(".bin" if legacy else ".safetensors") for name in files)
    index = json.loads((tmp_path / ("pytorch_model.bin.index.json" if legacy else "model.safetensors.index.json"))
                       .read_text())
    assert set(index["weight_map"].values()) == set(files)
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(tmp_path)), _logits(model))


def test_bad_export_configs_fail_before_loading(tiny, tiny_llama_dir, tmp_path):
    base = {"model_name_or_path": str(tiny_llama_dir), "template": "qwen", "export_dir": str(tmp_path / "x")}
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set"):
        run_export(make_config({**base, "export_hub_model_id": "me/model"}))
    with pytest.raises(ConfigError) as error:
        run_export(make_config({**base, "export_quantization_bit": 4, "export_quantization_dataset": "calib.txt",
                                "adapter_name_or_path": str(tiny / "adapter1")}))
    assert "merge the adapters first" in str(error.value)
    if importlib.util.find_spec("gptqmodel") is None:
        assert "gptqmodel" in str(error.value)  # the missing package is named
    with pytest.raises(ConfigError, match="export_dir is not set"):
        run_export(make_config({"model_name_or_path": str(tiny_llama_dir)}))
    with pytest.raises(ConfigError) as error:  # validate_config's problems and the export's, in one error
        run_export(make_config({**base, "template": "qwenn", "export_size": 0}))
    assert error.value.problems[0].startswith("template: unknown template 'qwenn'")
    assert error.value.problems[1] == "export_size: 0 GB; the largest shard must be at least 1 GB"
    assert not (tmp_path / "x").exists()


def test_push_uploads_the_folder_and_reports_failures(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, exist_ok):
            calls.append(("create", repo_id, exist_ok))

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(("upload", folder_path, repo_id))
            return "https://hub/commit/1"

    assert push_to_hub(str(tmp_path), "me/model", api=FakeApi()) == "https://hub/commit/1"
    assert calls == [("create", "me/model", True), ("upload", str(tmp_path), "me/model")]

    class DownApi(FakeApi):
        def create_repo(self, repo_id, exist_ok):
            raise ConnectionError("no route to host")

    with pytest.raises(UserError, match="no route to host.*upload it later"):
        push_to_hub(str(tmp_path), "me/model", api=DownApi())


def test_gptq_calibration_windows_follow_llamafactory(tiny_llama_dir, tmp_path):
    from tuneforge.errors import DataError
    from tuneforge.export.gptq import calibration_samples

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    rows = ["short", "a much longer row of calibration text that has plenty of tokens in it for the window",
            "another fairly long row, which also holds more than eight tokens of text"]
    data = tmp_path / "calib.jsonl"
    data.write_text("\n".join(json.dumps({"text": row}) for row in rows))
    samples = calibration_samples(tokenizer, str(data), nsamples=5, maxlen=8, seed=0)
    encoded = [tokenizer(row, add_special_tokens=False)["input_ids"] for row in rows[1:]]
    assert len(samples) == 5
    for sample in samples:
        ids = sample["input_ids"]
        assert len(ids) == 8 and sample["attention_mask"] == [1] * 8
        assert any(ids == row[i:i + 8] for row in encoded for i in range(len(row) - 7))  # a window of a long row
    assert calibration_samples(tokenizer, str(data), nsamples=5, maxlen=8, seed=0) == samples  # seeded
    with pytest.raises(DataError, match="lower export_quantization_maxlen"):
        calibration_samples(tokenizer, str(data), nsamples=1, maxlen=500)


@pytest.mark.skipif(not LF_EXAMPLES.is_dir(), reason="LLaMA-Factory examples not present")
def test_llamafactory_merge_example_runs_unchanged(tiny, tiny_llama_dir, tmp_path):
    from tuneforge.config import load_config

    cfg = load_config(str(LF_EXAMPLES / "merge_lora" / "qwen3_lora_sft.yaml"),
                      [f"model_name_or_path={tiny_llama_dir}", f"adapter_name_or_path={tiny / 'adapter1'}",
                       f"export_dir={tmp_path / 'merged'}"])
    run_export(cfg)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert text.startswith("<|im_start|>user\nHi<|im_end|>\n")  # qwen3_nothink: no default system prompt
    assert (tmp_path / "merged" / "Modelfile").read_text().startswith("# Ollama Modelfile")
    from peft import PeftModel

    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), tiny / "adapter1")
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(tmp_path / "merged")),
                               _logits(reference), atol=1e-5, rtol=1e-5)


def _ggml_llama_logits(path, ids):
    """A llama forward pass from the GGUF file alone, with GGML's rotary convention (adjacent pairs
    rotate, LLAMA_ROPE_TYPE_NORM): it reproduces the HF logits only if the q/k rows were reordered right."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    w = {t.name: np.array(t.data, dtype=np.float64) for t in reader.tensors}

    def scalar(key):
        field = reader.fields[key]
        return field.parts[field.data[0]][0].item()

    heads, kv_heads = scalar("llama.attention.head_count"), scalar("llama.attention.head_count_kv")
    eps, base = scalar("llama.attention.layer_norm_rms_epsilon"), scalar("llama.rope.freq_base")
    x = w["token_embd.weight"][ids]
    n, hidden = x.shape
    d = hidden // heads
    angles = np.arange(n)[:, None] * base ** (-np.arange(0, d, 2) / d)[None, :]  # (n, d/2)
    cos, sin = np.cos(angles), np.sin(angles)

    def norm(v, weight):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * weight

    def rope(v):  # v: (n, h, d); rotate (v[2i], v[2i+1])
        even, odd = v[..., 0::2], v[..., 1::2]
        out = np.empty_like(v)
        out[..., 0::2] = even * cos[:, None] - odd * sin[:, None]
        out[..., 1::2] = even * sin[:, None] + odd * cos[:, None]
        return out

    for layer in range(scalar("llama.block_count")):
        p = f"blk.{layer}."
        h = norm(x, w[p + "attn_norm.weight"])
        q = rope((h @ w[p + "attn_q.weight"].T).reshape(n, heads, d))
        k = rope((h @ w[p + "attn_k.weight"].T).reshape(n, kv_heads, d)).repeat(heads // kv_heads, axis=1)
        v = (h @ w[p + "attn_v.weight"].T).reshape(n, kv_heads, d).repeat(heads // kv_heads, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d) + np.triu(np.full((n, n), -np.inf), 1)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", probs, v).reshape(n, hidden) @ w[p + "attn_output.weight"].T
        h = norm(x, w[p + "ffn_norm.weight"])
        gate = h @ w[p + "ffn_gate.weight"].T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
    return norm(x, w["output_norm.weight"]) @ w["output.weight"].T


def test_gguf_forward_pass_in_ggml_convention_gives_the_merged_logits(exported):
    merged = AutoModelForCausalLM.from_pretrained(exported)
    expected = _logits(merged)[0].double().numpy()
    np.testing.assert_allclose(_ggml_llama_logits(exported / "model-f32.gguf", IDS[0].numpy()), expected,
                               atol=1e-4, rtol=1e-4)


def test_vision_language_export_keeps_the_image_processor(tmp_path):
    from transformers import AutoImageProcessor, AutoModelForImageTextToText

    from tuneforge.testing.tiny_vl_model import build_tiny_qwen2_vl

    build_tiny_qwen2_vl(tmp_path / "vl")
    run_export(make_config({"model_name_or_path": str(tmp_path / "vl"), "template": "qwen2_vl",
                            "export_dir": str(tmp_path / "out")}))
    processor = AutoImageProcessor.from_pretrained(tmp_path / "out")
    assert processor.patch_size == 14 and processor.merge_size == 2
    original = AutoModelForImageTextToText.from_pretrained(tmp_path / "vl")
    exported = AutoModelForImageTextToText.from_pretrained(tmp_path / "out")
    ids = torch.tensor([[5, 17, 42]])
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=ids).logits, original(input_ids=ids).logits)
