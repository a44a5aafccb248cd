"""The API beyond text chat: images for a vision-language model (data URLs and local files), reward scores
from a value-head model, and `tuneforge api` itself (environment, backend errors, the served app)."""

import base64
import dataclasses
import io
import os
import shutil

import openai
import pytest
import torch
from PIL import Image

from tuneforge import cli
from tuneforge.config import make_config
from tuneforge.errors import ConfigError
from tuneforge.infer import ChatEngine
from tuneforge.infer.scoring import RewardScorer
from tuneforge.serve import ApiSettings, api_settings, create_app
from tuneforge.serve import server as server_module
from tuneforge.testing.tiny_vl_model import build_tiny_qwen2_vl
from serve_helpers import http, serving

ASK = "<image>What is this?"


def png_data_url(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_message(url, text="What is this?"):
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def vl_engine(tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("tiny_vl_api")
    build_tiny_qwen2_vl(path)
    return ChatEngine(make_config(dict(model_name_or_path=str(path), template="qwen2_vl", do_sample=False,
                                       max_new_tokens=6)))


def test_an_image_url_reaches_the_vision_model(vl_engine, tmp_path):
    red, blue = Image.new("RGB", (56, 56), (255, 0, 0)), Image.new("RGB", (56, 56), (0, 0, 255))
    expected = {name: vl_engine.generate_batch([vl_engine.build_prompt([{"role": "user", "content": ASK}],
                                                                       images=[image])], images=[[image]])[0].text
                for name, image in (("red", red), ("blue", blue))}
    assert expected["red"] != expected["blue"], "the pixels change the answer"
    streamed = "".join(vl_engine.stream_chat([{"role": "user", "content": ASK}], images=[blue]))
    assert streamed == expected["blue"]  # `tuneforge chat` and the web UI's chat stream through this path
    red.save(tmp_path / "red.png")
    app = create_app(vl_engine, settings=api_settings({"API_MODEL_NAME": "vl", "SAFE_MEDIA_PATH": str(tmp_path),
                                                       "ALLOW_LOCAL_FILES": "1"}))
    with serving(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        answers = [client.chat.completions.create(model="vl", messages=image_message(source)).choices[0].message.content
                   for source in (png_data_url(red), png_data_url(blue), str(tmp_path / "red.png"))]
        assert answers == [expected["red"], expected["blue"], expected["red"]]
        status, body = http("POST", url + "/v1/chat/completions",
                            {"model": "vl", "messages": image_message(str(tmp_path / "missing.png"))})
        assert status == 400 and "no image file at" in body["error"]["message"]
        status, body = http("POST", url + "/v1/chat/completions", {"model": "vl", "messages": image_message("/etc/passwd")})
        assert status == 403 and "outside the directory this server reads images from" in body["error"]["message"]
        status, body = http("POST", url + "/v1/chat/completions",
                            {"model": "vl", "messages": image_message("data:image/png;base64,@@@")})
        assert status == 400 and "the data URL holds invalid base64" in body["error"]["message"]
    app.state.batcher.close()
    closed = create_app(vl_engine, settings=api_settings({"API_MODEL_NAME": "vl", "SAFE_MEDIA_PATH": str(tmp_path)}))
    with serving(closed) as url:  # local files are off by default
        status, body = http("POST", url + "/v1/chat/completions",
                            {"model": "vl", "messages": image_message(str(tmp_path / "red.png"))})
        assert status == 403 and "local image files are disabled on this server (set ALLOW_LOCAL_FILES=1" in (
            body["error"]["message"])
    closed.state.batcher.close()


# ---- reward scores ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory, tiny_llama_dir):
    """The tiny chat model plus a seeded LLaMA-Factory value head (value_head.safetensors)."""
    from safetensors.torch import save_file
    from transformers import AutoConfig

    path = tmp_path_factory.mktemp("tiny_rm")
    shutil.copytree(tiny_llama_dir, path, dirs_exist_ok=True)
    hidden = AutoConfig.from_pretrained(path).hidden_size
    generator = torch.Generator().manual_seed(0)
    save_file({"v_head.summary.weight": torch.randn(1, hidden, generator=generator),
               "v_head.summary.bias": torch.tensor([0.25])}, str(path / "value_head.safetensors"))
    return path


def _expected_score(model_dir, text):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    head = load_file(str(model_dir / "value_head.safetensors"))
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        last = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
    return float(last @ head["v_head.summary.weight"][0] + head["v_head.summary.bias"][0])


def test_scores_are_the_value_head_on_the_last_token(reward_dir):
    texts = ["A short answer.", "A much longer answer that needs padding next to the short one, surely."]
    scorer = RewardScorer(make_config(dict(model_name_or_path=str(reward_dir), stage="rm")))
    app = create_app(scorer=scorer, settings=api_settings({"API_MODEL_NAME": "rm", "API_KEY": "k"}))
    with serving(app) as url:
        status, body = http("POST", url + "/v1/score/evaluation", {"model": "rm", "messages": texts}, key="k")
        assert status == 200 and body["object"] == "score.evaluation"
        assert body["scores"] == pytest.approx([_expected_score(reward_dir, text) for text in texts], abs=1e-4)
        status, body = http("POST", url + "/v1/chat/completions",
                            {"model": "rm", "messages": [{"role": "user", "content": "hi"}]}, key="k")
        assert status == 405 and "this server serves a reward model" in body["error"]["message"]
        status, body = http("POST", url + "/v1/score/evaluation", {"model": "rm", "messages": []}, key="k")
        assert status == 400
        status, body = http("POST", url + "/v1/score/evaluation", key="k",
                            raw=b'{"model": "rm", "messages": ["ok", "a\\udc00"]}')
        assert (status, body["error"]["param"]) == (400, "messages.1")
        assert body["error"]["message"].startswith("messages.1: character 1 is a lone UTF-16 surrogate")


def test_ppo_scores_rollouts_through_this_endpoint(reward_dir, monkeypatch):
    """reward_model_type: api posts LLaMA-Factory's {"model": "model", "messages": [...]} here."""
    from transformers import AutoTokenizer

    from tuneforge.train.stages.ppo.rewards import ApiReward

    monkeypatch.delenv("API_KEY", raising=False)
    app = create_app(scorer=RewardScorer(make_config(dict(model_name_or_path=str(reward_dir), stage="rm"))),
                     settings=api_settings({"API_MODEL_NAME": "rm"}))
    tokenizer = AutoTokenizer.from_pretrained(str(reward_dir))
    sequences = [tokenizer("a fine answer")["input_ids"], tokenizer("no")["input_ids"]]
    texts = tokenizer.batch_decode(sequences, skip_special_tokens=False)
    with serving(app) as url:
        scores = ApiReward(url + "/v1/score/evaluation", tokenizer).score(sequences, [1, 1])
    assert scores.tolist() == pytest.approx([_expected_score(reward_dir, text) for text in texts], abs=1e-4)


def test_a_model_without_value_head_is_refused_clearly(tiny_llama_dir):
    with pytest.raises(ConfigError, match=r"needs a reward model \(stage rm output\): no value_head.safetensors"):
        RewardScorer(make_config(dict(model_name_or_path=str(tiny_llama_dir), stage="rm")))


# ---- tuneforge api ---------------------------------------------------------------------------------------

def test_environment_settings_follow_llamafactory(tmp_path):
    here = os.path.realpath(os.getcwd())
    assert api_settings({}) == ApiSettings(host="127.0.0.1", port=8000, api_key=None, model_name="gpt-3.5-turbo",
                                           max_concurrent=4, allow_local_files=False, safe_media_path=here)
    assert api_settings({"API_PORT": "9001", "API_KEY": "k", "API_MODEL_NAME": "m", "MAX_CONCURRENT": "2",
                         "API_HOST": "127.0.0.1"}) == ApiSettings(host="127.0.0.1", port=9001, api_key="k",
                                                                  model_name="m", max_concurrent=2,
                                                                  allow_local_files=False, safe_media_path=here)
    assert api_settings({"ALLOW_LOCAL_FILES": "1", "SAFE_MEDIA_PATH": str(tmp_path)}) == dataclasses.replace(
        api_settings({}), allow_local_files=True, safe_media_path=os.path.realpath(tmp_path))
    assert api_settings({"ALLOW_REMOTE_URLS": "no", "ALLOW_PRIVATE_URLS": "yes", "API_MAX_BODY_MB": "2",
                         "API_MAX_MESSAGES": "10", "API_MAX_IMAGE_MB": "3", "API_MAX_IMAGE_PIXELS": "1000"}
                        ) == dataclasses.replace(api_settings({}), allow_remote_urls=False, allow_private_urls=True,
                                                 max_body_bytes=2 * 1024 * 1024, max_messages=10,
                                                 max_image_bytes=3 * 1024 * 1024, max_image_pixels=1000)
    with pytest.raises(ConfigError) as error:
        api_settings({"API_PORT": "http", "MAX_CONCURRENT": "0"})
    assert error.value.problems == ["API_PORT='http': expected a whole number from 1 to 65535",
                                    "MAX_CONCURRENT='0': expected a whole number from 1 to 256"]


def test_the_api_command_serves_the_config_with_the_environment(monkeypatch, tmp_path, capsys, tiny_llama_dir):
    config = tmp_path / "api.yaml"
    config.write_text(f"model_name_or_path: {tiny_llama_dir}\ntemplate: qwen\ndo_sample: false\n"
                      "max_new_tokens: 4\n")
    monkeypatch.delenv("API_HOST", raising=False)
    monkeypatch.setenv("API_KEY", "env-key")
    monkeypatch.setenv("API_MODEL_NAME", "served")
    monkeypatch.setenv("API_PORT", "8123")
    started = {}
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **kwargs: started.update(app=app, host=host, port=port))
    assert cli.main(["api", str(config)]) == 0
    assert (started["host"], started["port"]) == ("127.0.0.1", 8123)  # loopback unless API_HOST says otherwise
    assert "Serving 'served' at http://127.0.0.1:8123/v1" in capsys.readouterr().out
    with serving(started["app"]) as url:
        assert http("GET", url + "/v1/models", key="env-key") == (200, {"object": "list", "data": [
            {"id": "served", "object": "model", "created": 0, "owned_by": "tuneforge"}]})
        assert http("GET", url + "/v1/models")[0] == 401
    started["app"].state.batcher.close()


def test_the_api_command_refuses_a_missing_backend_before_loading(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(__import__("sys").modules, "vllm", None)
    monkeypatch.setattr(server_module, "build_app", lambda *args: pytest.fail("the model must not load"))
    assert cli.main(["api", "model_name_or_path=/nonexistent", "infer_backend=vllm"]) == 2
    assert "infer_backend: vllm needs the `vllm` package" in capsys.readouterr().err
