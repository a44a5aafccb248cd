"""Batched generation in the engine: left-padded rows answer as they would alone, stop strings end a row
exactly where they begin, streamed deltas join to the final text, presence penalty, the vLLM / SGLang
integrations (against stand-ins for their documented APIs), and their clear error when not installed."""

import sys
import types

import pytest
import torch

from tuneforge.config import make_config
from tuneforge.errors import ConfigError
from tuneforge.infer import ChatEngine
from tuneforge.infer.backends import check_backend, create_engine
from tuneforge.infer.decoding import RowDecoder
from tuneforge.infer.penalties import PresencePenalty
from serve_helpers import scripted

QUESTIONS = ["Hello there", "What is the capital of France? Answer in one long sentence please.", "2+2"]


@pytest.fixture(scope="module")
def engine(tiny_llama_dir):
    torch.set_num_threads(1)
    return ChatEngine(make_config(dict(model_name_or_path=str(tiny_llama_dir), template="qwen", do_sample=False,
                                       max_new_tokens=10)))


def test_a_left_padded_batch_answers_each_prompt_as_it_would_alone(engine):
    prompts = [engine.build_prompt([{"role": "user", "content": question}]) for question in QUESTIONS]
    assert len({len(prompt) for prompt in prompts}) == 3, "prompts of different lengths, so rows get padded"
    alone = [engine.generate_batch([prompt])[0] for prompt in prompts]
    together = engine.generate_batch(prompts)
    assert [response.text for response in together] == [response.text for response in alone]
    assert [(r.prompt_length, r.response_length, r.finish_reason) for r in together] == [
        (len(prompt), 10, "length") for prompt in prompts]


def test_streamed_pieces_per_row_join_to_each_rows_text(engine):
    prompts = [engine.build_prompt([{"role": "user", "content": question}]) for question in QUESTIONS[:2]]
    pieces = {0: [], 1: []}
    responses = engine.generate_batch(prompts, on_piece=lambda row, text: pieces[row].append(text))
    assert ["".join(pieces[row]) for row in (0, 1)] == [response.text for response in responses]
    assert all(len(pieces[row]) > 1 for row in (0, 1))


def test_a_stop_string_ends_the_answer_before_it(engine, monkeypatch):
    script = scripted(engine, monkeypatch, "Paris is nice. The end")
    prompt = engine.build_prompt([{"role": "user", "content": "Tell me"}])
    assert engine.generate_batch([prompt], max_new_tokens=50)[0].text == "Paris is nice. The end"
    pieces = []
    response = engine.generate_batch([prompt], stop=["nice", "zzz"], max_new_tokens=50,
                                     on_piece=lambda _row, text: pieces.append(text))[0]
    assert (response.text, response.finish_reason) == ("Paris is ", "stop")
    assert "".join(pieces) == "Paris is "
    assert response.response_length < len(script) - 1, "generation stopped at the stop string"


def test_the_template_stop_token_ends_the_answer(engine, monkeypatch):
    script = scripted(engine, monkeypatch, "Short.")
    response = engine.respond([{"role": "user", "content": "Hi"}], max_new_tokens=50)
    assert (response.text, response.response_length, response.finish_reason) == ("Short.", len(script), "stop")


def test_row_decoder_holds_back_what_could_still_change():
    class Bytes:  # a byte-level "tokenizer": token i is byte i
        def decode(self, ids, skip_special_tokens=True):
            return bytes(ids).decode("utf-8", errors="replace")

    decoder = RowDecoder(Bytes(), stop_token_ids=[0], stop_strings=["END"])
    pieces = [decoder.push(byte) for byte in "héEN".encode()]
    assert pieces == ["h", "", "é", "", ""], "half a UTF-8 character and a possible stop word wait"
    assert decoder.push(ord("x")) == "ENx", "no stop word after all"
    assert decoder.push(ord("E")) + decoder.push(ord("N")) + decoder.push(ord("D")) == ""
    assert (decoder.text, decoder.finished, decoder.stopped) == ("héENx", True, True)
    assert decoder.push(ord("y")) == "", "a finished row ignores the padding that follows"


def test_presence_penalty_subtracts_once_per_token_present_in_the_answer():
    penalty = PresencePenalty(0.5, prompt_length=2)
    input_ids = torch.tensor([[7, 3, 3, 3, 5], [3, 7, 1, 1, 1]])
    scores = torch.zeros(2, 10)
    out = penalty(input_ids, scores)
    assert out[0].tolist() == [0, 0, 0, -0.5, 0, -0.5, 0, 0, 0, 0]  # prompt token 7 is not penalised
    assert out[1].tolist() == [0, -0.5, 0, 0, 0, 0, 0, 0, 0, 0]


def test_presence_penalty_reaches_generate_and_changes_a_repetitive_answer(engine):
    prompt = engine.build_prompt([{"role": "user", "content": "Hello there"}])
    plain = engine.generate_batch([prompt], max_new_tokens=30)[0]
    penalised = engine.generate_batch([prompt], max_new_tokens=30, presence_penalty=2.0)[0]
    ids = engine.tokenizer(plain.text, add_special_tokens=False)["input_ids"]
    assert len(set(ids)) < len(ids), "the tiny model repeats itself without the penalty"
    assert penalised.text != plain.text


# ---- vLLM / SGLang -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["vllm", "sglang"])
def test_a_missing_backend_is_a_clear_error_before_loading(backend, monkeypatch):
    monkeypatch.setitem(sys.modules, backend, None)  # as if not installed
    with pytest.raises(ConfigError, match=f"infer_backend: {backend} needs the `{backend}` package"):
        create_engine(make_config(dict(model_name_or_path="/nonexistent", infer_backend=backend)))


def _fake_vllm(calls):
    """A stand-in for vllm's documented offline API that records what it is given."""
    vllm, lora = types.ModuleType("vllm"), types.ModuleType("vllm.lora.request")

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LLM:
        def __init__(self, **kwargs):
            calls["engine"] = kwargs

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            calls["generate"] = (prompts, [p.kwargs for p in params], lora_request)
            output = types.SimpleNamespace(text="Paris", token_ids=[5, 6], finish_reason="stop")
            return [types.SimpleNamespace(outputs=[output]) for _ in prompts]

    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    lora.LoRARequest = lambda name, number, path: (name, number, path)
    return {"vllm": vllm, "vllm.lora": types.ModuleType("vllm.lora"), "vllm.lora.request": lora}


def test_vllm_gets_our_prompt_ids_and_lf_settings(tiny_llama_dir, monkeypatch, tmp_path):
    calls = {}
    for name, module in _fake_vllm(calls).items():
        monkeypatch.setitem(sys.modules, name, module)
    engine = create_engine(make_config(dict(
        model_name_or_path=str(tiny_llama_dir), template="qwen", infer_backend="vllm",
        adapter_name_or_path=str(tmp_path), vllm_maxlen=512, vllm_gpu_util=0.5, vllm_config={"seed": 3},
        temperature=0.5, top_k=0, max_new_tokens=7)))
    assert {key: calls["engine"][key] for key in ("max_model_len", "gpu_memory_utilization", "enable_lora", "seed")} \
        == dict(max_model_len=512, gpu_memory_utilization=0.5, enable_lora=True, seed=3)
    response = engine.respond([{"role": "user", "content": "Capital of France?"}], )
    prompts, params, lora_request = calls["generate"]
    assert prompts == [{"prompt_token_ids": engine.build_prompt([{"role": "user", "content": "Capital of France?"}])}]
    assert {key: params[0][key] for key in ("temperature", "top_k", "max_tokens", "stop_token_ids")} == dict(
        temperature=0.5, top_k=-1, max_tokens=7, stop_token_ids=engine.stop_token_ids)
    assert lora_request == ("default", 1, str(tmp_path))
    assert (response.text, response.response_length, response.finish_reason) == ("Paris", 2, "stop")
    assert list(engine.stream_chat([{"role": "user", "content": "Hi"}])) == ["Paris"]


def test_sglang_gets_our_prompt_ids_and_lf_settings(tiny_llama_dir, monkeypatch):
    calls = {}
    sglang = types.ModuleType("sglang")

    class Engine:
        def __init__(self, **kwargs):
            calls["engine"] = kwargs

        def generate(self, input_ids, sampling_params, lora_path=None):
            calls["generate"] = (input_ids, sampling_params, lora_path)
            return [{"text": "Rome", "output_ids": [9, 9, 9],
                     "meta_info": {"finish_reason": {"type": "length"}}} for _ in input_ids]

    sglang.Engine = Engine
    monkeypatch.setitem(sys.modules, "sglang", sglang)
    engine = create_engine(make_config(dict(
        model_name_or_path=str(tiny_llama_dir), template="qwen", infer_backend="sglang", sglang_maxlen=1024,
        sglang_mem_fraction=0.6, sglang_tp_size=2, do_sample=False, max_new_tokens=3)))
    assert {key: calls["engine"][key] for key in ("context_length", "mem_fraction_static", "tp_size")} == dict(
        context_length=1024, mem_fraction_static=0.6, tp_size=2)
    prompts = [engine.build_prompt([{"role": "user", "content": q}]) for q in QUESTIONS[:2]]
    responses = engine.generate_batch(prompts, stop=["."], presence_penalty=0.5)
    input_ids, params, lora = calls["generate"]
    assert input_ids == prompts and lora is None
    assert {key: params[0][key] for key in ("temperature", "max_new_tokens", "stop", "presence_penalty")} == dict(
        temperature=0.0, max_new_tokens=3, stop=["."], presence_penalty=0.5)
    assert [(r.text, r.response_length, r.finish_reason) for r in responses] == [("Rome", 3, "length")] * 2
    with pytest.raises(ConfigError, match="beam search is not served by infer_backend sglang"):
        engine.generate_batch(prompts, num_beams=2)


def test_infer_dtype_casts_the_model(tiny_llama_dir):
    engine = ChatEngine(make_config(dict(model_name_or_path=str(tiny_llama_dir), template="qwen",
                                         infer_dtype="bfloat16", do_sample=False, max_new_tokens=3)))
    assert {parameter.dtype for parameter in engine.model.parameters()} == {torch.bfloat16}
    assert engine.respond([{"role": "user", "content": "Hi"}]).response_length >= 1


def test_check_backend_passes_for_huggingface():
    check_backend(make_config(dict(infer_backend="huggingface")))
