"""Every LLaMA-Factory 0.9.5 parameter is declared with the same name and default, and the computed
defaults come out as LLaMA-Factory computes them."""

import pytest

from tuneforge.config import all_params, make_config
from tuneforge.config.schema import GROUPS, KINDS

# Facts copied from LLaMA-Factory 0.9.5 (Model/Data/Finetuning/Generating/EvaluationArguments and its own
# training-argument additions): name -> default. `seed` is the transformers training argument.
LF_PARAMS = {
    'adapter_folder': None, 'adapter_name_or_path': None, 'add_special_tokens': None, 'add_tokens': None,
    'additional_target': None, 'apollo_layerwise': False, 'apollo_proj': 'random', 'apollo_proj_type': 'std',
    'apollo_rank': 16, 'apollo_scale': 32.0, 'apollo_scale_front': False, 'apollo_scale_type': 'channel',
    'apollo_target': 'all', 'apollo_update_interval': 200, 'asft_alpha': 0.1, 'audio_sampling_rate': 16000,
    'badam_mask_mode': 'adjacent', 'badam_mode': 'layer', 'badam_start_block': None, 'badam_switch_interval': 50,
    'badam_switch_mode': 'ascending', 'badam_update_ratio': 0.05, 'badam_verbose': 0, 'batch_size': 4,
    'buffer_size': 16384, 'cache_dir': None, 'compute_accuracy': False, 'create_new_adapter': False,
    'crop_to_patches': False, 'cutoff_len': 2048, 'data_shared_file_system': False, 'dataset': None,
    'dataset_dir': 'data', 'default_system': None, 'disable_gradient_checkpointing': False,
    'disable_shuffling': False, 'do_sample': True, 'double_quantization': True,
    'download_mode': 'reuse_dataset_if_exists', 'dpo_label_smoothing': 0.0, 'eaft_alpha': 1.0,
    'early_stopping_steps': None, 'enable_liger_kernel': False, 'enable_thinking': True,
    'enable_torch_profiler': False, 'eval_dataset': None, 'eval_num_beams': None, 'eval_on_each_dataset': False,
    'export_device': 'cpu', 'export_dir': None, 'export_hub_model_id': None, 'export_legacy_format': False,
    'export_quantization_bit': None, 'export_quantization_dataset': None, 'export_quantization_maxlen': 1024,
    'export_quantization_nsamples': 128, 'export_size': 5, 'finetuning_type': 'lora', 'flash_attn': 'auto',
    'fp8': False, 'fp8_backend': 'auto', 'fp8_enable_fsdp_float8_all_gather': False, 'freeze_extra_modules': None,
    'freeze_language_model': False, 'freeze_multi_modal_projector': True, 'freeze_trainable_layers': 2,
    'freeze_trainable_modules': 'all', 'freeze_vision_tower': True, 'galore_layerwise': False,
    'galore_proj_type': 'std', 'galore_rank': 16, 'galore_scale': 2.0, 'galore_target': 'all',
    'galore_update_interval': 200, 'hf_hub_token': None, 'hyper_parallel_args': None,
    'ignore_pad_token_for_loss': True, 'image_do_pan_and_scan': False, 'image_max_pixels': 589824,
    'image_min_pixels': 1024, 'include_effective_tokens_per_second': False, 'infer_backend': 'huggingface',
    'infer_dtype': 'auto', 'init_special_tokens': 'noise_init', 'interleave_probs': None,
    'kt_expert_checkpoint_path': None, 'kt_lora_expert_intermediate_size': None, 'kt_lora_expert_num': None,
    'kt_use_lora_experts': None, 'kt_weight_path': None, 'kto_chosen_weight': 1.0, 'kto_rejected_weight': 1.0,
    'lang': 'en', 'ld_alpha': None, 'length_penalty': 1.0, 'lora_alpha': None, 'lora_dropout': 0.0,
    'lora_rank': 8, 'lora_target': 'all', 'loraplus_lr_embedding': 1e-06, 'loraplus_lr_ratio': None,
    'low_cpu_mem_usage': True, 'mask_history': False, 'master_addr': None, 'master_port': None,
    'max_length': 1024, 'max_new_tokens': 1024, 'max_samples': None, 'media_dir': None, 'mix_strategy': 'concat',
    'mixture_of_depths': None, 'model_name_or_path': None, 'model_revision': 'main', 'module_dropout': 0.0,
    'moe_aux_loss_coef': None, 'ms_hub_token': None, 'n_shot': 5, 'neat_packing': False,
    'new_special_tokens_config': None, 'num_beams': 1, 'offload_folder': 'offload', 'oft_block_size': 32,
    'oft_rank': 0, 'oft_target': 'all', 'om_hub_token': None, 'overwrite_cache': False, 'packing': None,
    'pissa_convert': False, 'pissa_init': False, 'pissa_iter': 16, 'plot_loss': False, 'ppo_buffer_size': 1,
    'ppo_epochs': 4, 'ppo_score_norm': False, 'ppo_target': 6.0, 'ppo_whiten_rewards': False,
    'pref_bco_weight': 0.0, 'pref_beta': 0.1, 'pref_ftx': 0.0, 'pref_loss': 'sigmoid',
    'preprocessing_batch_size': 1000, 'preprocessing_num_workers': None, 'preserve_thinking': False,
    'print_param_status': False, 'profile_modules': None, 'profiler_active_steps': 1, 'profiler_output_dir': None,
    'profiler_profile_memory': True, 'profiler_record_shapes': True, 'profiler_repeat': 1,
    'profiler_wait_steps': 1, 'profiler_warmup_steps': 1, 'profiler_with_stack': True, 'pure_bf16': False,
    'quantization_bit': None, 'quantization_device_map': None, 'quantization_method': 'bnb',
    'quantization_type': 'nf4', 'ray_init_kwargs': None, 'ray_num_workers': 1, 'ref_model': None,
    'ref_model_adapters': None, 'ref_model_quantization_bit': None, 'repetition_penalty': 1.0,
    'resize_vocab': False, 'reward_model': None, 'reward_model_adapters': None,
    'reward_model_quantization_bit': None, 'reward_model_type': 'lora', 'rope_scaling': None, 'save_dir': None,
    'sglang_config': None, 'sglang_lora_backend': 'triton', 'sglang_maxlen': 4096, 'sglang_mem_fraction': 0.7,
    'sglang_tp_size': -1, 'shift_attn': False, 'simpo_gamma': 0.5, 'skip_special_tokens': True,
    'split_special_tokens': False, 'stage': 'sft', 'streaming': False, 'swanlab_api_key': None,
    'swanlab_lark_secret': None, 'swanlab_lark_webhook_url': None, 'swanlab_logdir': None,
    'swanlab_mode': 'cloud', 'swanlab_project': 'llamafactory', 'swanlab_run_name': None,
    'swanlab_workspace': None, 'task': None, 'task_dir': 'evaluation', 'temperature': 0.95, 'template': None,
    'tokenized_path': None, 'tool_format': None, 'top_k': 50, 'top_p': 0.7, 'train_from_scratch': False,
    'train_on_prompt': False, 'trust_remote_code': False, 'upcast_layernorm': False,
    'upcast_lmhead_output': False, 'use_adam_mini': False, 'use_apollo': False, 'use_asft_loss': False,
    'use_audio_in_video': False, 'use_badam': False, 'use_dft_loss': False, 'use_dora': False,
    'use_eaft_loss': False, 'use_fast_tokenizer': True, 'use_galore': False, 'use_hyper_parallel': False,
    'use_kt': False, 'use_kv_cache': True, 'use_llama_pro': False, 'use_mca': False, 'use_muon': False,
    'use_reentrant_gc': True, 'use_rslora': False, 'use_swanlab': False, 'use_unsloth': False,
    'use_unsloth_gc': False, 'use_v1_kernels': False, 'val_size': 0.0, 'video_fps': 2.0,
    'video_max_pixels': 65536, 'video_maxlen': 128, 'video_min_pixels': 256, 'vllm_config': None,
    'vllm_enforce_eager': False, 'vllm_gpu_util': 0.7, 'vllm_max_lora_rank': 32, 'vllm_maxlen': 4096,
}

# transformers 4 keys that transformers 5 removed and tuneforge declares itself, mapped by the validator.
REMOVED_IN_TRANSFORMERS_5 = {"overwrite_output_dir": False, "warmup_ratio": 0.0, "evaluation_strategy": None,
                             "no_cuda": False, "group_by_length": False, "logging_dir": None,
                             "save_safetensors": True, "fsdp_transformer_layer_cls_to_wrap": None}


def test_every_lf_parameter_is_declared_with_its_default():
    params = all_params()
    missing = sorted(set(LF_PARAMS) - set(params))
    assert missing == []
    wrong = {name: (params[name].default, default) for name, default in LF_PARAMS.items()
             if params[name].default != default}
    assert wrong == {}


# Parameters tuneforge adds for features LLaMA-Factory lacks.
TUNEFORGE_ONLY = {"export_gguf": None, "gguf_file": None, "padding_free": True, "trace_samples": False,
                  "skip_invalid_rows": False,
                  "hang_watchdog_factor": 10.0, "hang_watchdog_min_s": 300.0,
                  # LLaMA-Factory main's RayArguments (after 0.9.5); resources_per_worker defaults to None: a GPU
                  # only where the Ray cluster has one (LF: always {"GPU": 1}).
                  "ray_run_name": None, "ray_storage_path": "./saves", "ray_storage_filesystem": None,
                  "resources_per_worker": None, "placement_strategy": "PACK",
                  # LLaMA-Factory forks' sequence-parallel keys (360-LLaMA-Factory; not in LF main)
                  "sequence_parallel_size": 1, "sequence_parallel_mode": "ulysses",
                  # stage grpo (TRL / ms-swift names; LLaMA-Factory has no GRPO)
                  "num_generations": 8, "max_completion_length": 256, "reward_funcs": None, "reward_weights": None,
                  "beta": 0.0, "epsilon": 0.2, "epsilon_high": None, "num_iterations": 1, "loss_type": "dapo",
                  "importance_sampling_level": "token", "scale_rewards": "group",
                  "mask_truncated_completions": False, "dynamic_sampling": False, "max_resample_times": 3,
                  "soft_max_length": None, "soft_cache_length": None, "use_vllm": False, "vllm_mode": "colocate"}


def test_no_parameter_beyond_lf_and_the_removed_transformers_keys():
    assert set(all_params()) == set(LF_PARAMS) | set(REMOVED_IN_TRANSFORMERS_5) | set(TUNEFORGE_ONLY)
    for name, default in REMOVED_IN_TRANSFORMERS_5.items():
        assert all_params()[name].default == default


def test_declarations_are_complete():
    for param in all_params().values():
        assert param.kind in KINDS and param.group in GROUPS
        assert len(param.help) > 10, param.name
        if param.choices and param.default is not None:
            assert param.default in param.choices, param.name


def test_data_params_are_implemented_and_later_features_are_not():
    params = all_params()
    assert all(p.implemented for p in params.values() if p.group == "data")
    for name in ("model_name_or_path", "stage", "trust_remote_code", "cache_dir", "use_fast_tokenizer",
                 "lora_rank", "finetuning_type", "do_sample", "flash_attn", "plot_loss", "use_dora", "rope_scaling",
                 "shift_attn", "use_llama_pro", "pissa_init", "infer_backend",
                 "quantization_bit", "logging_dir", "save_safetensors", "disable_shuffling", "early_stopping_steps",
                 "include_effective_tokens_per_second", "compute_accuracy", "print_param_status",
                 "train_from_scratch", "use_reentrant_gc", "upcast_layernorm", "upcast_lmhead_output",
                 "low_cpu_mem_usage", "use_dft_loss", "use_eaft_loss", "eaft_alpha", "use_asft_loss", "asft_alpha",
                 "use_muon", "use_adam_mini", "fp8", "fp8_backend", "fp8_enable_fsdp_float8_all_gather", "oft_rank",
                 "oft_block_size", "oft_target", "module_dropout", "mixture_of_depths"):
        assert params[name].implemented, name
    for name in ("use_hyper_parallel",):
        assert not params[name].implemented, name


def test_choices_follow_lf():
    params = all_params()
    # LLaMA-Factory's stages, plus grpo (ours: LLaMA-Factory has no GRPO)
    assert params["stage"].choices == ("pt", "sft", "rm", "ppo", "dpo", "kto", "grpo")
    assert params["finetuning_type"].choices == ("lora", "oft", "freeze", "full")
    assert params["pref_loss"].choices == ("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo")
    assert params["flash_attn"].choices == ("auto", "disabled", "sdpa", "fa2", "fa3")
    assert params["rope_scaling"].choices == ("linear", "dynamic", "yarn", "llama3")
    assert params["mix_strategy"].choices == ("concat", "interleave_under", "interleave_over", "interleave_once")


def test_lora_alpha_defaults_to_twice_the_rank():
    assert make_config({}).lora.lora_alpha == 16
    assert make_config({"lora_rank": 32}).lora.lora_alpha == 64
    assert make_config({"lora_rank": 32, "lora_alpha": 8}).lora.lora_alpha == 8


@pytest.mark.parametrize("values, packing", [
    ({}, False),
    ({"stage": "pt"}, True),
    ({"stage": "pt", "packing": False}, False),
    ({"packing": True}, True),
    ({"neat_packing": True}, True),
    ({"neat_packing": True, "packing": False}, True),
])
def test_packing_default(values, packing):
    assert make_config(values).data.packing is packing


def test_cutoff_len_keeps_the_user_value_when_packing():
    assert make_config({"packing": True, "cutoff_len": 1024}).data.cutoff_len == 1024


def test_comma_strings_become_lists():
    cfg = make_config({
        "dataset": "a, b", "adapter_name_or_path": "x,y", "lora_target": "q_proj,v_proj",
        "additional_target": "embed_tokens,lm_head", "freeze_trainable_modules": "mlp,self_attn",
        "freeze_extra_modules": "embed_tokens", "add_tokens": "<a>,<b>", "add_special_tokens": "<c>",
        "galore_target": "mlp", "apollo_target": "attn", "oft_target": "q_proj",
        "mix_strategy": "interleave_under", "interleave_probs": "0.25,0.75",
    })
    assert cfg.data.dataset == ["a", "b"]
    assert make_config({"eval_dataset": "c"}).data.eval_dataset == ["c"]
    assert cfg.model.adapter_name_or_path == ["x", "y"]
    assert cfg.lora.lora_target == ["q_proj", "v_proj"]
    assert cfg.lora.additional_target == ["embed_tokens", "lm_head"]
    assert cfg.freeze.freeze_trainable_modules == ["mlp", "self_attn"]
    assert cfg.freeze.freeze_extra_modules == ["embed_tokens"]
    assert cfg.model.add_tokens == ["<a>", "<b>"]
    assert cfg.model.add_special_tokens == ["<c>"]
    assert (cfg.galore.galore_target, cfg.apollo.apollo_target, cfg.oft.oft_target) == (["mlp"], ["attn"], ["q_proj"])
    assert cfg.data.interleave_probs == [0.25, 0.75]


def test_list_defaults_are_lists_and_yaml_lists_are_accepted():
    cfg = make_config({"dataset": ["a", "b"], "interleave_probs": [1, 0], "mix_strategy": "interleave_over"})
    assert cfg.data.dataset == ["a", "b"]
    assert cfg.data.interleave_probs == [1.0, 0.0]
    assert cfg.lora.lora_target == ["all"]
    assert cfg.freeze.freeze_trainable_modules == ["all"]
    # Defaults are copied per config: changing one config's list does not change another's.
    cfg.lora.lora_target.append("x")
    assert make_config({}).lora.lora_target == ["all"]


def test_media_dir_defaults_to_dataset_dir():
    assert make_config({}).data.media_dir == "data"
    assert make_config({"dataset_dir": "my/data"}).data.media_dir == "my/data"
    assert make_config({"dataset_dir": "my/data", "media_dir": "media"}).data.media_dir == "media"


def test_lf_training_argument_post_processing():
    cfg = make_config({"cutoff_len": 300, "eval_num_beams": 3})
    args = cfg.training_args
    assert (cfg.train.generation_max_length, args.generation_max_length) == (300, 300)
    assert (cfg.train.generation_num_beams, args.generation_num_beams) == (3, 3)
    assert args.remove_unused_columns is False
    assert args.label_names == ["labels"]
    assert make_config({"finetuning_type": "full"}).training_args.label_names is None


def test_hf_defaults_are_visible_on_the_config():
    cfg = make_config({})
    assert cfg.train.seed == 42
    assert cfg.train.learning_rate == 5e-05
    assert cfg.train.output_dir == "trainer_output"
    assert cfg.train.do_train is False


def test_init_special_tokens_falls_back_without_descriptions(caplog):
    assert make_config({"init_special_tokens": "desc_init"}).model.init_special_tokens == "noise_init"
    assert "needs new_special_tokens_config" in caplog.text


def test_parameter_docs_are_up_to_date():
    from pathlib import Path

    from tuneforge.config.docs import render_markdown

    docs = Path(__file__).resolve().parents[2] / "docs" / "parameters.md"
    assert docs.read_text() == render_markdown(), "run: python -m tuneforge.config.docs > docs/parameters.md"
