"""Web UI without a browser: form <-> YAML round trip, the seed's composite fields, and jobs that outlive the
page (never stalled by their output, found again, aborted cleanly)."""

import json
import sys
import time

import pytest
import yaml

from tuneforge.config.hf_args import hf_params
from tuneforge.config.schema import all_params
from tuneforge.webui import actions, form, job_panel, locales
from tuneforge.webui.access import Access
from tuneforge.webui.jobs import JobRegistry

PARAMS = {**hf_params(), **all_params()}
# What the Train tab and top bar show: tuneforge's parameters but those a page field stands for, the
# transformers arguments the seed names, and the page fields.
FIELDS = [*(name for name in all_params() if name not in form.COVERED), *(name for name in hf_params()
          if name in locales.LABELS), *form.PAGE_FIELDS]


def inside(folder):
    """What the handlers may use when `folder` (a test's tmp_path) is allowed besides the defaults."""
    return Access.default(str(folder), [str(folder)])


def defaults():
    return form.config_to_form({}, FIELDS, PARAMS)


def test_untouched_form_writes_only_what_the_run_is():
    values = {**defaults(), "model_name_or_path": "models/tiny", "template": "qwen", "dataset": ["demo_alpaca"],
              "output_dir": "saves/run1"}
    assert form.form_to_config(values, PARAMS) == {
        "do_train": True, "model_name_or_path": "models/tiny", "stage": "sft", "finetuning_type": "lora",
        "template": "qwen", "dataset": ["demo_alpaca"], "dataset_dir": "data", "output_dir": "saves/run1"}


def test_form_yaml_form_round_trip_keeps_every_value():
    values = {**defaults(), "model_name_or_path": "m", "template": "llama3", "dataset": ["a", "b"],
              "output_dir": "out", "learning_rate": 2e-4, "num_train_epochs": 2.0, "cutoff_len": 512,
              "lora_target": "q_proj, v_proj", "lora_rank": 16, "packing": "true", "logging_steps": 5,
              "compute_type": "bf16", "booster": "flashattn2", "checkpoint_path": ["saves/a", "saves/b"],
              "ds_stage": "3", "ds_offload": True, "report_to": "tensorboard", "max_samples": 100,
              "extra_args": "max_steps: 7\nweight_decay: 0.1\n"}
    config = form.form_to_config(values, PARAMS)
    assert config["lora_target"] == ["q_proj", "v_proj"] and config["lora_rank"] == 16 and config["packing"] is True
    assert config["logging_steps"] == 5 and isinstance(config["logging_steps"], int)  # not 5.0
    assert (config["bf16"], config["flash_attn"], config["adapter_name_or_path"]) == (True, "fa2", ["saves/a", "saves/b"])
    assert config["deepspeed"] == "out/ds_z3_offload_config.json"
    assert (config["max_steps"], config["weight_decay"], config["report_to"]) == (7, 0.1, "tensorboard")
    text = form.to_yaml(config)
    back = form.config_to_form(yaml.safe_load(text), FIELDS, PARAMS)
    assert {field: back[field] for field in values} == {**values, "lora_target": "q_proj, v_proj",
                                                        "packing": "true", "extra_args": back["extra_args"]}
    assert yaml.safe_load(back["extra_args"]) == {"max_steps": 7, "weight_decay": 0.1}
    assert form.to_yaml(form.form_to_config(back, PARAMS)) == text  # YAML -> form -> YAML is unchanged


def test_values_the_page_fields_cannot_express_stay_in_extra_arguments():
    back = form.config_to_form({"flash_attn": "sdpa", "deepspeed": "my_ds.json", "fp16": True}, FIELDS, PARAMS)
    assert (back["booster"], back["ds_stage"], back["compute_type"]) == ("auto", "none", "fp16")
    assert yaml.safe_load(back["extra_args"]) == {"flash_attn": "sdpa", "deepspeed": "my_ds.json"}


def test_full_finetuning_checkpoint_replaces_the_model_path_and_eval_mode_predicts():
    values = {**defaults(), "model_name_or_path": "base", "finetuning_type": "full", "checkpoint_path": ["saves/full"]}
    assert form.form_to_config(values, PARAMS)["model_name_or_path"] == "saves/full"
    evaluation = form.form_to_config({**defaults(), "eval_dataset": ["x"], "output_dir": "o"}, PARAMS, "eval")
    assert evaluation["do_predict"] is True and "do_train" not in evaluation and evaluation["eval_dataset"] == ["x"]
    assert actions.command_for("eval", evaluation) == ["train", "o/webui_eval.yaml"]
    assert actions.command_for("eval", {**evaluation, "task": "mmlu_test"}) == ["eval", "o/webui_eval.yaml"]


def test_widgets_follow_the_declarations():
    assert form.widget_for(PARAMS["use_dora"]) == form.Widget("checkbox", False)
    assert form.widget_for(PARAMS["packing"]) == form.Widget("dropdown", "none", ("none", "true", "false"))
    assert form.widget_for(PARAMS["stage"]).choices == ("pt", "sft", "rm", "ppo", "dpo", "kto", "grpo")
    assert form.widget_for(PARAMS["rope_scaling"]).choices[0] == "none"  # nullable: "none" means unset
    assert form.widget_for(PARAMS["cutoff_len"]) == form.Widget("number", 2048, integer=True)
    assert form.decode(PARAMS["rope_scaling"], "none") is None
    assert form.decode(PARAMS["report_to"], "none") == "none"  # there "none" is a real value


def test_declared_switches_are_form_fields():
    # padding_free / trace_samples (group train) were declared after the form was written.
    assert form.widget_for(PARAMS["padding_free"]) == form.Widget("checkbox", True)
    assert form.widget_for(PARAMS["trace_samples"]) == form.Widget("checkbox", False)
    assert {"padding_free", "trace_samples"} <= set(FIELDS)
    config = form.form_to_config({**defaults(), "padding_free": False, "trace_samples": True}, PARAMS)
    assert config["padding_free"] is False and config["trace_samples"] is True
    assert "padding_free" not in form.form_to_config(defaults(), PARAMS)  # at its default: not written


def test_a_bad_form_is_refused_before_the_job_starts_with_every_problem(tmp_path, monkeypatch):
    from tuneforge.errors import ConfigError

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text('{"known": {"file_name": "known.json"}}')
    values = {**defaults(), "model_name_or_path": "m", "output_dir": str(tmp_path / "run"),
              "dataset_dir": str(tmp_path / "data"), "template": "no_such_template", "dataset": ["missing"]}
    monkeypatch.setattr(actions.JOBS, "start", lambda *args, **kwargs: pytest.fail("the job must not start"))
    with pytest.raises(ConfigError) as refused:
        actions.start_job(values, PARAMS, "train", inside(tmp_path))
    problems = refused.value.problems
    assert len(problems) == 2 and "no_such_template" in problems[0] and problems[1].startswith("dataset: ")
    shown = actions.error_text(refused.value)  # the page's Markdown: the problems as a list, no traceback
    assert shown.startswith("⚠ 2 problems in the configuration") and "Traceback" not in shown
    assert shown.splitlines()[-2:] == [f"- {problem}" for problem in problems]


def test_save_and_load_config(tmp_path):
    path = tmp_path / "cfg" / "run.yaml"
    values = {**defaults(), "model_name_or_path": "m", "lora_rank": 4, "output_dir": "o"}
    assert actions.save_config(values, PARAMS, str(path), inside(tmp_path)) == f"saved {path}"
    assert yaml.safe_load(path.read_text())["lora_rank"] == 4
    assert actions.load_config(str(path), FIELDS, PARAMS, inside(tmp_path))["lora_rank"] == 4


def test_device_count_and_deepspeed_stage_reach_the_training_job(tmp_path, monkeypatch):
    from tuneforge.train.launch.deepspeed import zero_config

    values = {**defaults(), "model_name_or_path": "m", "output_dir": str(tmp_path / "run"), "device_count": 2,
              "ds_stage": "3", "ds_offload": True}
    access = inside(tmp_path)
    _, command = actions.preview_command(values, PARAMS, "train", access)
    assert command.startswith("NPROC_PER_NODE=2 tuneforge train ")
    _, single = actions.preview_command({**values, "device_count": 1}, PARAMS, "train", access)
    assert single.startswith("tuneforge train ")

    started = {}
    monkeypatch.setattr(actions.JOBS, "start", lambda kind, args, folder, env=None: started.update(env=env, args=args))
    monkeypatch.setattr(actions, "validated_config", lambda config: None)  # model "m" does not exist
    actions.start_job(values, PARAMS, "train", access)
    assert started["env"] == {"NPROC_PER_NODE": "2"}
    config = yaml.safe_load(open(started["args"][-1]).read())  # the run YAML the job reads
    assert json.loads(open(config["deepspeed"]).read()) == zero_config(3, offload=True)
    with pytest.raises(Exception, match="device count 'two' is not a whole number"):
        actions.job_env({"device_count": "two"}, "train")


# ---- jobs ------------------------------------------------------------------------------------------

# A stand-in training process: floods stdout (a pipe nobody read would stall it), logs two steps, then
# waits; SIGINT makes it exit 130 like the CLI. With "stubborn" it ignores SIGINT.
FAKE_TRAINER = r"""
import json, signal, sys, time, os
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
print("x" * 200_000, flush=True)
with open(os.path.join(sys.argv[1], "trainer_log.jsonl"), "a") as log:
    for step in (1, 2):
        log.write(json.dumps({"step": step, "total": 4, "loss": 3.0 - step, "elapsed": step, "remaining": 4 - step}) + "\n")
        log.flush()
try:
    time.sleep(60)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def wait_for(condition, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("mode", ["polite", "stubborn"])
def test_job_runs_unwatched_is_found_again_and_aborts(tmp_path, monkeypatch, mode):
    registry = JobRegistry()
    monkeypatch.setattr(job_panel, "JOBS", registry)
    job = registry.start("train", [str(tmp_path), mode], str(tmp_path), program=[sys.executable, "-c", FAKE_TRAINER])
    assert wait_for(lambda: len((tmp_path / "trainer_log.jsonl").read_text().splitlines()) == 2
                    if (tmp_path / "trainer_log.jsonl").exists() else False)
    # A page opened now (no browser state) shows the same running job and its progress.
    html, log, plot = job_panel.refresh("train", True)
    assert "train: running" in html and "step 2/4 · 50%" in html and "loss 1.0000" in html
    assert list(plot["step"]) == [1, 2] and list(plot["loss"]) == [2.0, 1.0]
    assert registry.get("train") is job and job.running
    with pytest.raises(RuntimeError, match="already running"):
        registry.start("train", ["x"], str(tmp_path))
    registry.abort("train", waits=(2.0, 5.0, 5.0))
    assert not job.running and job.status == "aborted"
    assert job.returncode == (130 if mode == "polite" else -15)  # SIGINT honoured, else SIGTERM
    if mode == "polite":
        assert job.console_tail(1) == "interrupted\n"
    assert 'data-status=\'aborted\'' in job_panel.refresh("train", True)[0]


def test_past_runs_and_checkpoints_are_found_under_the_output_root(tmp_path):
    from tuneforge.webui import runs

    for name, losses in (("a/lora/run1", [3.0, 2.5]), ("b/full/run2", [4.0, 3.0, 2.0])):
        folder = tmp_path / name
        (folder / "checkpoint-2").mkdir(parents=True)
        (folder / "checkpoint-2" / "adapter_config.json").write_text("{}")
        lines = [{"step": i + 1, "total": len(losses), "loss": loss} for i, loss in enumerate(losses)]
        (folder / "trainer_log.jsonl").write_text("".join(f"{json.dumps(line)}\n" for line in lines) + '{"step": 9')
    (tmp_path / "a/lora/run1/adapter_config.json").write_text("{}")
    assert sorted(runs.runs_table(str(tmp_path))) == [["a/lora/run1", "2/2", 2.5, "yes"], ["b/full/run2", "3/3", 2.0, "no"]]
    assert runs.find_checkpoints(str(tmp_path)) == [str(tmp_path / "a/lora/run1"), str(tmp_path / "a/lora/run1/checkpoint-2"),
                                                    str(tmp_path / "b/full/run2/checkpoint-2")]
    figure = runs.runs_figure(str(tmp_path))
    shown = [axis for axis in figure.axes if axis.get_visible()]
    assert sorted(axis.get_title() for axis in shown) == ["a/lora/run1", "b/full/run2"]  # side by side
    assert sorted(len(axis.lines[0].get_xdata()) for axis in shown) == [2, 3]


def test_a_restarted_server_adopts_the_running_job_and_can_abort_it(tmp_path):
    first = JobRegistry()
    run = tmp_path / "saves" / "run"
    job = first.start("train", [str(run), "polite"], str(run), program=[sys.executable, "-c", FAKE_TRAINER])
    assert wait_for(lambda: (run / "trainer_log.jsonl").exists())
    second = JobRegistry()  # the server restarted
    (adopted,) = second.adopt(str(tmp_path / "saves"))
    assert (adopted.kind, adopted.output_dir, adopted.pid, adopted.running) == ("train", str(run), job.process.pid, True)
    assert second.adopt(str(tmp_path / "saves")) == []  # already followed
    second.abort("train", waits=(5.0, 5.0, 5.0))
    assert adopted.status == "aborted" and wait_for(lambda: job.returncode == 130)


# A server started with SIGINT ignored (nohup ... &) starts the fake trainer, waits until it logged its
# steps, aborts it and prints its exit code and last console line.
SERVER_IGNORING_SIGINT = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.path.insert(0, sys.argv[3])
from tuneforge.webui.jobs import JobRegistry
registry = JobRegistry()
job = registry.start("train", [sys.argv[1], "polite"], sys.argv[1], program=[sys.executable, "-c", sys.argv[2]])
log = os.path.join(sys.argv[1], "trainer_log.jsonl")
while not (os.path.exists(log) and len(open(log).read().splitlines()) == 2):
    time.sleep(0.05)
registry.abort("train", waits=(5.0, 5.0, 5.0))
print(job.returncode, job.console_tail(1).strip())
"""


def test_a_job_started_by_a_server_that_ignores_sigint_still_stops_on_abort_sigint(tmp_path):
    import subprocess
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[2] / "src")
    result = subprocess.run([sys.executable, "-c", SERVER_IGNORING_SIGINT, str(tmp_path), FAKE_TRAINER, src],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "130 interrupted", result.stderr  # SIGINT honoured, not SIGTERM's -15


# Every GRPO key (rlhf keys whose help starts "GRPO") and the sampling keys its rollouts read, at a value other
# than the default: the form's run configuration must carry each one to the run's Config.
GRPO_FORM_VALUES = {
    "num_generations": 4, "max_completion_length": 32, "reward_funcs": ["accuracy", "length"],
    "reward_weights": [1.0, 0.5], "beta": 0.04, "epsilon": 0.1, "epsilon_high": 0.28, "num_iterations": 2,
    "loss_type": "grpo", "importance_sampling_level": "sequence", "scale_rewards": "batch",
    "mask_truncated_completions": True, "dynamic_sampling": True, "max_resample_times": 5, "soft_max_length": 32,
    "soft_cache_length": 8, "use_vllm": True, "vllm_mode": "server",
}
ROLLOUT_FORM_VALUES = {"do_sample": False, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "max_new_tokens": 64}


def test_every_grpo_key_of_the_form_reaches_the_run_config():
    from tuneforge.config import make_config

    grpo_keys = {name for name, param in all_params().items() if param.group == "rlhf" and param.help.startswith("GRPO")}
    assert grpo_keys == set(GRPO_FORM_VALUES)  # a new GRPO key needs a value here
    chosen = {**GRPO_FORM_VALUES, **ROLLOUT_FORM_VALUES}
    assert all(chosen[name] != PARAMS[name].default for name in chosen)
    values = {**defaults(), "model_name_or_path": "m", "template": "qwen", "dataset": ["d"], "output_dir": "out",
              "stage": "grpo", **{name: form.encode(PARAMS[name], value) for name, value in chosen.items()}}
    config = yaml.safe_load(form.to_yaml(form.form_to_config(values, PARAMS)))  # what the job's YAML holds
    cfg = make_config(config)
    assert {name: cfg.value(name) for name in GRPO_FORM_VALUES} == GRPO_FORM_VALUES
    assert {name: cfg.value(name) for name in ROLLOUT_FORM_VALUES} == ROLLOUT_FORM_VALUES
