"""Validation: unknown keys, bad values, cross-field rules and transformers pass-through, with the exact
error texts a user sees, all problems reported at once."""

import pytest

from tuneforge.config import load_config, make_config
from tuneforge.errors import ConfigError, UserError


def problems_of(values=None, path=None, overrides=()):
    with pytest.raises(ConfigError) as info:
        if path is None:
            make_config(values)
        else:
            load_config(path, overrides, values)
    return info.value


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, UserError)
    assert str(ConfigError("plain text")) == "plain text"
    assert str(ConfigError(["a", "b"], source="x.yaml")) == "x.yaml: 2 problems in the configuration:\n  - a\n  - b"


def test_unknown_key_names_key_file_and_closest_keys(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("learning_rat: 1.0e-4\ndataset: a\n")
    error = problems_of(path=path)
    assert str(error) == f"{path}: unknown key 'learning_rat'. Did you mean: learning_rate?"
    assert error.problems == ["unknown key 'learning_rat'. Did you mean: learning_rate?"]


def test_unknown_key_from_command_line_and_declared_params(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("dataset: a\n")
    error = problems_of(path=path, overrides=["lora_rnk=4"])
    assert error.problems == ["unknown key 'lora_rnk' (given on the command line). "
                              "Did you mean: lora_rank, local_rank, galore_rank?"]


def test_unknown_key_without_any_close_match():
    error = problems_of({"zzzqqq": 1})
    assert str(error) == ("unknown key 'zzzqqq' (given in values): not a tuneforge / LLaMA-Factory parameter "
                          "nor a transformers training argument (all keys: docs/parameters.md).")


def test_key_removed_by_transformers_5_gets_its_replacement():
    error = problems_of({"adafactor": True})
    assert error.problems == ["unknown key 'adafactor' (given in values): transformers 5 removed it; "
                              "use `optim: adafactor`."]


@pytest.mark.parametrize("values, problem", [
    ({"cutoff_len": "abc"}, "cutoff_len: expected an integer, got 'abc' (str)."),
    ({"cutoff_len": 1.5}, "cutoff_len: expected an integer, got 1.5 (float)."),
    ({"cutoff_len": None}, "cutoff_len: null is not allowed; expected an integer."),
    ({"max_samples": "ten"}, "max_samples: expected an integer or null, got 'ten' (str)."),
    ({"train_on_prompt": "yes please"}, "train_on_prompt: expected true or false, got 'yes please' (str)."),
    ({"lora_dropout": True}, "lora_dropout: expected a number, got True (bool)."),
    ({"dataset": "a,,b"}, "dataset: expected a list of strings or a comma-separated string or null, "
                          "got 'a,,b' (str)."),
    ({"dataset": [1, 2]}, "dataset: expected a list of strings or a comma-separated string or null, "
                          "got [1, 2] (list)."),
    ({"vllm_config": "not json"}, "vllm_config: expected a mapping (or a JSON object string) or null, "
                                  "got 'not json' (str)."),
    ({"learning_rate": "fast"}, "learning_rate: expected a number, got 'fast' (str)."),
    ({"per_device_train_batch_size": "2x"}, "per_device_train_batch_size: expected an integer, got '2x' (str)."),
])
def test_bad_value_names_key_value_and_what_is_allowed(values, problem):
    assert problems_of(values).problems == [problem]


def test_bad_choice_lists_choices_and_suggests():
    assert problems_of({"stage": "sfft"}).problems == [
        "stage: 'sfft' is not allowed; choose one of: pt, sft, rm, ppo, dpo, kto, grpo. Did you mean 'sft'?"]
    assert problems_of({"ref_model_quantization_bit": 3}).problems == [
        "ref_model_quantization_bit: 3 is not allowed; choose one of: 4, 8."]


def test_hf_enum_choice_is_checked_before_transformers():
    (problem,) = problems_of({"lr_scheduler_type": "cosinee"}).problems
    assert problem.startswith("lr_scheduler_type: 'cosinee' is not allowed; choose one of: linear, cosine, ")
    assert problem.endswith("Did you mean 'cosine'?")


def test_several_problems_are_reported_together(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("learnin_rate: 1\ncutoff_len: abc\nstage: sfft\nmask_history: true\ntrain_on_prompt: true\n")
    error = problems_of(path=path)
    assert error.problems == [
        "unknown key 'learnin_rate'. Did you mean: learning_rate?",
        "cutoff_len: expected an integer, got 'abc' (str).",
        "stage: 'sfft' is not allowed; choose one of: pt, sft, rm, ppo, dpo, kto, grpo. Did you mean 'sft'?",
        "mask_history and train_on_prompt cannot both be true; mask_history trains on the last answer only, "
        "train_on_prompt on everything.",
    ]
    assert str(error).startswith(f"{path}: 4 problems in the configuration:\n  - unknown key 'learnin_rate'")


def test_numbers_given_as_strings_are_converted():
    cfg = make_config({"learning_rate": "5e-5", "cutoff_len": "1024", "train_on_prompt": "true"})
    assert (cfg.train.learning_rate, cfg.data.cutoff_len, cfg.data.train_on_prompt) == (5e-5, 1024, True)
    assert cfg.training_args.learning_rate == 5e-5


def test_dict_values_accept_json_strings():
    assert make_config({"vllm_config": '{"max_model_len": 8}'}).infer.vllm_config == {"max_model_len": 8}


@pytest.mark.parametrize("values, problem", [
    ({"val_size": 0.1}, "val_size is set but dataset is not: the validation split is taken from `dataset`."),
    ({"dataset": "a", "eval_dataset": "b", "val_size": 0.1},
     "val_size and eval_dataset are both set; keep one (eval_dataset is used as is, val_size splits `dataset`)."),
    ({"dataset": "a,b", "interleave_probs": "0.5,0.5"},
     "interleave_probs needs an interleaved mix_strategy (interleave_under, interleave_over or interleave_once); "
     "mix_strategy is 'concat'."),
    ({"dataset": "a,b", "interleave_probs": "1", "mix_strategy": "interleave_under"},
     "interleave_probs has 1 values but dataset has 2 datasets; give one probability per dataset."),
    ({"dataset": "a", "streaming": True, "val_size": 0.1},
     "val_size: with streaming the validation split must be a row count (an integer >= 1), got 0.1."),
    ({"streaming": True, "max_samples": 10}, "max_samples cannot be used with streaming; remove one of them."),
    ({"stage": "pt", "neat_packing": True}, "neat_packing only works with stage sft (stage is 'pt'); remove it."),
    ({"stage": "ppo"}, "stage ppo needs reward_model (a path or hub id of the reward model)."),
    ({"stage": "dpo", "pref_loss": "ipo", "dpo_label_smoothing": 0.1},
     "dpo_label_smoothing only works with pref_loss sigmoid (it is 'ipo')."),
    ({"use_galore": True}, "use_galore cannot be combined with LoRA; set finetuning_type full or freeze."),
    ({"finetuning_type": "full", "use_galore": True, "use_badam": True},
     "use_galore and use_badam are both set; choose one optimizer."),
    ({"finetuning_type": "full", "use_dora": True}, "use_dora only works with finetuning_type lora (it is 'full')."),
    ({"finetuning_type": "full", "use_llama_pro": True},
     "use_llama_pro needs finetuning_type freeze or lora, not full."),
    ({"finetuning_type": "freeze", "quantization_bit": 4},
     "quantization_bit only works with finetuning_type lora or oft (it is 'freeze')."),
    ({"quantization_bit": 4, "adapter_name_or_path": "a,b"},
     "a quantized model takes one adapter, got 2 in adapter_name_or_path; merge them first."),
    ({"image_max_pixels": 10}, "image_max_pixels (10) is smaller than image_min_pixels (1024)."),
    ({"export_quantization_bit": 4}, "export_quantization_bit needs export_quantization_dataset (calibration data)."),
    ({"do_train": True}, "do_train is true but dataset is not set; name the training dataset(s)."),
    ({"do_train": True, "dataset": "a", "do_eval": True},
     "evaluation is requested (do_eval / do_predict / eval_strategy) but there is no eval data; "
     "set eval_dataset or val_size."),
    ({"do_train": True, "dataset": "a", "streaming": True},
     "streaming needs max_steps (the length of a streamed dataset is unknown)."),
    ({"do_train": True, "dataset": "a", "infer_backend": "vllm"},
     "infer_backend 'vllm' is for chat, api and webui; training uses huggingface."),
])
def test_lf_cross_field_rules(values, problem):
    assert problems_of(values).problems == [problem]


def test_training_run_rules_do_not_apply_to_inference_configs():
    assert make_config({"infer_backend": "vllm"}).infer.infer_backend == "vllm"


def test_hf_keys_pass_through_to_the_real_training_arguments():
    cfg = make_config({"learning_rate": 1e-4, "per_device_train_batch_size": 3, "report_to": "none",
                       "lr_scheduler_type": "cosine", "output_dir": "out", "logging_steps": 7})
    args = cfg.training_args
    assert (args.learning_rate, args.per_device_train_batch_size, args.output_dir) == (1e-4, 3, "out")
    assert args.lr_scheduler_type == "cosine" and args.report_to == [] and args.logging_steps == 7
    assert type(args).__name__ == "Seq2SeqTrainingArguments"


def test_transformers_own_errors_name_the_keys():
    error = problems_of({"load_best_model_at_end": True, "eval_strategy": "steps", "save_strategy": "epoch",
                         "dataset": "a", "val_size": 0.1})
    (problem,) = error.problems
    assert problem.startswith("load_best_model_at_end, save_strategy: --load_best_model_at_end "
                              "requires the save and eval strategy to match")
    assert problem.endswith("(raised by transformers.Seq2SeqTrainingArguments)")


def test_removed_transformers_keys_are_mapped_and_kept_visible():
    cfg = make_config({"warmup_ratio": 0.1, "evaluation_strategy": "steps", "no_cuda": True,
                       "group_by_length": True, "overwrite_output_dir": True, "logging_dir": "logs",
                       "save_safetensors": False, "dataset": "a", "val_size": 0.1, "eval_steps": 5})
    args = cfg.training_args
    assert (cfg.train.warmup_ratio, cfg.train.warmup_steps, args.warmup_steps) == (0.1, 0.1, 0.1)
    assert (cfg.train.evaluation_strategy, cfg.train.eval_strategy, args.eval_strategy) == ("steps", "steps", "steps")
    assert (cfg.train.no_cuda, cfg.train.use_cpu, args.use_cpu) == (True, True, True)
    assert (cfg.train.group_by_length, args.train_sampling_strategy) == (True, "group_by_length")
    assert (cfg.train.overwrite_output_dir, cfg.train.logging_dir, cfg.train.save_safetensors) == (True, "logs", False)


def test_removed_key_conflicts_with_its_new_name():
    assert problems_of({"warmup_ratio": 0.1, "warmup_steps": 10}).problems == [
        "warmup_ratio (0.1) and warmup_steps (10) are both set; warmup_ratio is the transformers 4 name of "
        "warmup_steps: keep only `warmup_steps`."]
    assert problems_of({"warmup_ratio": 1.5}).problems == [
        "warmup_ratio: 1.5 is not a fraction; expected a number in [0, 1)."]


@pytest.mark.parametrize("fsdp, kept", [
    (["full_shard", "auto_wrap"], "full_shard auto_wrap"),  # LLaMA-Factory main's fp8 FSDP example
    ("full_shard auto_wrap", "full_shard auto_wrap"),
    (True, True),  # transformers 5's own form
    ("true", True),  # from a web form or `fsdp=true` on the command line
])
def test_fsdp_is_a_switch_a_string_or_a_list(fsdp, kept):
    cfg = make_config({"fsdp": fsdp})
    assert cfg.train.fsdp == kept
    assert cfg.training_args.fsdp is True
    assert cfg.training_args.fsdp_plugin_args["reshard_after_forward"] is True  # full_shard, or FSDP2's default


def test_fsdp_rejects_other_values():
    assert problems_of({"fsdp": ["full_shard", 1]}).problems == [
        "fsdp: expected true, false, a space-separated string or a list of strings or null, got "
        "['full_shard', 1] (list)."]


def test_fsdp_transformer_layer_cls_to_wrap_moves_into_fsdp_config():
    cfg = make_config({"fsdp": ["full_shard", "auto_wrap"], "fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer"})
    assert cfg.train.fsdp_transformer_layer_cls_to_wrap == ["LlamaDecoderLayer"]
    assert cfg.training_args.fsdp_config["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert cfg.training_args.fsdp_plugin_args["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"


def test_fsdp_transformer_layer_cls_to_wrap_merges_with_fsdp_config():
    cfg = make_config({"fsdp": True, "fsdp_config": {"version": 2, "cpu_offload": True},
                       "fsdp_transformer_layer_cls_to_wrap": "Qwen2DecoderLayer,LlamaDecoderLayer"})
    fsdp_config = cfg.training_args.fsdp_config
    assert (fsdp_config["version"], fsdp_config["cpu_offload"]) == (2, True)
    assert fsdp_config["transformer_layer_cls_to_wrap"] == ["Qwen2DecoderLayer", "LlamaDecoderLayer"]
    assert cfg.training_args.fsdp_plugin_args["transformer_cls_names_to_wrap"] == "Qwen2DecoderLayer,LlamaDecoderLayer"
    # The same classes given both ways is no conflict (transformers also strips a `fsdp_` prefix).
    same = make_config({"fsdp": True, "fsdp_config": {"fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer"},
                        "fsdp_transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]})
    assert same.training_args.fsdp_config["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]


def test_fsdp_transformer_layer_cls_to_wrap_conflicts_with_fsdp_config(tmp_path):
    assert problems_of({"fsdp": True, "fsdp_config": {"transformer_layer_cls_to_wrap": ["Qwen2DecoderLayer"]},
                        "fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer"}).problems == [
        "fsdp_transformer_layer_cls_to_wrap (['LlamaDecoderLayer']) and fsdp_config.transformer_layer_cls_to_wrap "
        "(['Qwen2DecoderLayer']) are both set and differ; fsdp_transformer_layer_cls_to_wrap is the transformers 4 "
        "name of fsdp_config's transformer_layer_cls_to_wrap: keep only the one inside `fsdp_config`."]
    fsdp_file = tmp_path / "fsdp.json"
    fsdp_file.write_text('{"version": 2}')
    assert problems_of({"fsdp": True, "fsdp_config": str(fsdp_file),
                        "fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer"}).problems == [
        f"fsdp_transformer_layer_cls_to_wrap (['LlamaDecoderLayer']) and fsdp_config ({str(fsdp_file)!r}, a file) are both "
        "set; fsdp_transformer_layer_cls_to_wrap is the transformers 4 name of fsdp_config's "
        "transformer_layer_cls_to_wrap: write `transformer_layer_cls_to_wrap` into that file and remove "
        "`fsdp_transformer_layer_cls_to_wrap`."]


def test_bf16_validates_on_a_cpu_machine_and_keeps_the_intent():
    cfg = make_config({"bf16": True})
    assert cfg.train.bf16 is True and cfg.training_args.bf16 is True


def test_deepspeed_config_file_is_checked(tmp_path):
    assert problems_of({"deepspeed": "missing/ds.json"}).problems[0].startswith(
        "deepspeed: config file 'missing/ds.json' not found (relative paths start at the current directory")
    bad = tmp_path / "ds.json"
    bad.write_text("{oops")
    assert problems_of({"deepspeed": str(bad)}).problems == [
        f"deepspeed: {str(bad)!r} is not valid JSON (line 1: Expecting property name enclosed in double quotes)."]
    good = tmp_path / "z3.json"
    good.write_text('{"zero_optimization": {"stage": 3}}')
    assert make_config({"deepspeed": str(good)}).train.deepspeed == str(good)
    assert problems_of({"deepspeed": str(good), "do_train": True, "dataset": "a", "pure_bf16": True}).problems == [
        "pure_bf16 does not work with DeepSpeed ZeRO-3."]


def test_config_pickles():
    import pickle

    cfg = make_config({"dataset": "a"})
    again = pickle.loads(pickle.dumps(cfg))
    assert again.data.dataset == ["a"] and again.explicit == {"dataset": ["a"]}
    assert again.training_args.output_dir == "trainer_output"


def test_config_is_read_only():
    import dataclasses

    cfg = make_config({})
    with pytest.raises(dataclasses.FrozenInstanceError, match="cutoff_len"):
        cfg.data.cutoff_len = 5
    with pytest.raises(AttributeError, match="read-only"):
        cfg.data = cfg.data
    with pytest.raises(AttributeError, match="nope"):
        cfg.nope
    with pytest.raises(KeyError, match="nope"):
        cfg.replace(nope=1)
    assert cfg.replace(cutoff_len=5).data.cutoff_len == 5
