"""The real model behind the user-facing commands: the API answers the official `openai` client sensibly, and
`tuneforge eval` on the bundled MMLU sample scores above chance with per-subject accuracy."""

from __future__ import annotations

import json
import logging

import openai
import pytest
import yaml

from tuneforge import cli
from tuneforge.config import make_config
from serve_helpers import serving

pytestmark = pytest.mark.real


def test_the_api_on_the_real_model_answers_the_openai_client(smollm2_gguf, smollm2_dir):
    from tuneforge.serve.server import api_settings, build_app

    cfg = make_config({"model_name_or_path": str(smollm2_gguf), "template": "smollm2", "do_sample": False,
                       "max_new_tokens": 16, "infer_dtype": "float32"})
    app = build_app(cfg, api_settings({"API_MODEL_NAME": "smollm2"}))
    with serving(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "What is the capital of France?"}])
        assert "Paris" in reply.choices[0].message.content, reply
        assert reply.choices[0].finish_reason == "stop"  # a short, finished answer, not cut at max_new_tokens
        assert reply.usage.completion_tokens < 16
    app.state.batcher.close()


def test_eval_on_the_bundled_mmlu_sample_scores_above_chance(smollm2_gguf, smollm2_dir, tmp_path, caplog):
    """`tuneforge eval` (cli.main) prints the category averages and logs one accuracy per subject."""
    caplog.set_level(logging.INFO, logger="tuneforge.evaluate.benchmark")
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": str(smollm2_gguf), "template": "smollm2",
                                      "task": "mmlu_sample_test", "task_dir": str(tmp_path / "none"),
                                      "n_shot": 0, "batch_size": 4, "save_dir": str(tmp_path / "results")}))
    assert cli.main(["eval", str(config)]) == 0

    log = (tmp_path / "results" / "results.log").read_text()
    average = float(log.splitlines()[0].split(":")[1])
    assert average > 25.0, log  # four choices: chance is 25 %
    subjects = {record.getMessage().split(":")[0] for record in caplog.records}
    assert subjects >= {"elementary_arithmetic", "world_capitals", "famous_authors"}, caplog.text
    saved = json.loads((tmp_path / "results" / "results.json").read_text())
    assert set(saved) == {"elementary_arithmetic", "world_capitals", "famous_authors"}
