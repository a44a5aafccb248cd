"""A tiny model LoRA-trained on one example answers that example's question with its trained answer, through
the engine and through `tuneforge chat` (adapter merged at load, template stop token ends the answer)."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from tuneforge import cli
from tuneforge.config import all_params, make_config
from tuneforge.infer import ChatEngine
from shared_paths import LF_EXAMPLES

pytest.importorskip("tuneforge.data.loader", reason="the dataset pipeline (issue 2) is not in this tree yet")

QUESTION, ANSWER = "What is tuneforge?", "A tool that fine-tunes language models."


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama_dir):
    """(model_dir, adapter_dir) after LoRA SFT on the one example until it is memorised."""
    from tuneforge.train import run_train

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("chat_lora")
    data = folder / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text(json.dumps({"one": {"file_name": "one.json"}}))
    (data / "one.json").write_text(json.dumps([{"instruction": QUESTION, "input": "", "output": ANSWER}]))
    run_train(make_config(dict(
        model_name_or_path=str(tiny_llama_dir), stage="sft", do_train=True, finetuning_type="lora", dataset="one",
        dataset_dir=str(data), template="qwen", cutoff_len=128, output_dir=str(folder / "adapter"),
        per_device_train_batch_size=1, learning_rate=2e-2, max_steps=40, logging_steps=10, save_steps=1000,
        report_to="none", seed=42)))
    return tiny_llama_dir, folder / "adapter"


def _implement_generate_keys(monkeypatch):
    """The generate keys are implemented by chat (see test_chat_cli.py); a no-op once declared so."""
    params = all_params()
    for name, param in list(params.items()):
        if param.group == "generate" and not param.implemented:
            monkeypatch.setitem(params, name, dataclasses.replace(param, implemented=True))


def _engine(trained, **values):
    model_dir, adapter_dir = trained
    return ChatEngine(make_config(dict(model_name_or_path=str(model_dir), adapter_name_or_path=str(adapter_dir),
                                       template="qwen", do_sample=False, max_new_tokens=40, **values)))


def test_the_trained_answer_comes_back_and_stops_at_the_template_stop_token(trained):
    engine = _engine(trained)
    response = engine.respond([{"role": "user", "content": QUESTION}])
    assert response.text == ANSWER
    assert response.finish_reason == "stop"
    answer_ids = engine.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    assert response.response_length == len(answer_ids) + 1  # the answer, then <|im_end|>
    assert "".join(engine.stream_chat([{"role": "user", "content": QUESTION}])) == ANSWER
    assert engine.chat([{"role": "user", "content": QUESTION}], skip_special_tokens=False) == ANSWER + "<|im_end|>"


def test_the_base_model_does_not_know_the_answer(trained):
    model_dir, _ = trained
    base = ChatEngine(make_config(dict(model_name_or_path=str(model_dir), template="qwen", do_sample=False,
                                       max_new_tokens=40)))
    assert base.chat([{"role": "user", "content": QUESTION}]) != ANSWER


def test_tuneforge_chat_with_the_adapter(trained, capsys, monkeypatch):
    _implement_generate_keys(monkeypatch)
    model_dir, adapter_dir = trained
    assert cli.main(["chat", f"model_name_or_path={model_dir}", f"adapter_name_or_path={adapter_dir}",
                     "template=qwen", "do_sample=false", "--message", QUESTION]) == 0
    assert capsys.readouterr().out == ANSWER + "\n"


LF_INFERENCE_EXAMPLE = LF_EXAMPLES / "inference" / "qwen3_lora_sft.yaml"


@pytest.mark.skipif(not LF_INFERENCE_EXAMPLE.is_file(), reason="LLaMA-Factory examples not present")
def test_llamafactory_inference_example_runs_unchanged(trained, capsys, monkeypatch):
    """LF's inference YAML (qwen3_nothink template, infer_backend huggingface), only the paths pointed at ours."""
    _implement_generate_keys(monkeypatch)
    model_dir, adapter_dir = trained
    assert cli.main(["chat", str(LF_INFERENCE_EXAMPLE), f"model_name_or_path={model_dir}",
                     f"adapter_name_or_path={adapter_dir}", "max_new_tokens=5", "--message", QUESTION]) == 0
    assert capsys.readouterr().out.strip()
