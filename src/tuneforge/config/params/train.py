"""Training keys that are not fields of transformers' Seq2SeqTrainingArguments.

Most training keys (learning_rate, per_device_train_batch_size, output_dir, bf16, deepspeed, ...) are
the real `transformers.Seq2SeqTrainingArguments` fields: they are not declared here but validated by that
class (see config/hf_args.py). Declared here are:
  - keys transformers 5 removed but LLaMA-Factory YAML files still use; the validator maps them onto
    their transformers 5 equivalents (see hf_args.REMOVED_KEY_MAPPING) and keeps their values in the
    config so later code honours them;
  - LLaMA-Factory's own additions to the training arguments (FP8, Ray, profiler), SwanLab logging and
    KTransformers.
"""

from typing import Any

from ..schema import declare

G = "train"
LATER: dict[str, Any] = {"implemented": False}

# --- removed in transformers 5, mapped by the validator ------------------------------------------
declare("overwrite_output_dir", "bool", False, "Start over in an existing output_dir instead of resuming "
        "from its last checkpoint.", G)
declare("warmup_ratio", "float", 0.0, "Share of the training steps used for learning-rate warmup "
        "(passed to transformers as a fractional `warmup_steps`).", G)
declare("evaluation_strategy", "str", None, "Old name of `eval_strategy`.", G, choices=("no", "steps", "epoch"))
declare("no_cuda", "bool", False, "Old name of `use_cpu`: train on the CPU even if a GPU is present.", G)
declare("group_by_length", "bool", False, "Batch samples of similar length together (transformers 5: "
        "`train_sampling_strategy: group_by_length`).", G)
declare("logging_dir", "str", None, "TensorBoard log folder (default: output_dir/runs/<date>_<host>); "
        "transformers 5 removed the argument, tuneforge gives the folder to its TensorBoard callback.", G)
declare("fsdp_transformer_layer_cls_to_wrap", "list", None, "Decoder-layer class names FSDP wraps (transformers "
        "5: `transformer_layer_cls_to_wrap` inside `fsdp_config`).", G)
declare("save_safetensors", "bool", True, "Save checkpoints as safetensors. transformers 5 always does; false "
        "(legacy .bin files) is refused with an explanation.", G)

# --- tuneforge's own switches (each also read from an environment variable alias) -----------------
declare("padding_free", "bool", True, "Run training batches padding-free (one packed row, per-row attention) "
        "where a check on the first batch shows it gives the padded loss. Alias: TUNEFORGE_PADDING_FREE=0.", G)
declare("hang_watchdog_factor", "float", 10.0, "Multi-process runs: when no step completes within this many "
        "times the median step time (and at least hang_watchdog_min_s), every rank dumps its Python stacks and "
        "the log names the rank that is behind; the run keeps waiting (ddp_timeout stays the hard limit). "
        "0 turns the watchdog off.", G)
declare("hang_watchdog_min_s", "float", 300.0, "The hang watchdog's floor: never report a stall shorter than "
        "this many seconds (the first steps, evaluation and checkpoint saves are not timed).", G)
declare("trace_samples", "bool", False, "Each rank writes which samples it trained on (output_dir/"
        "samples-rank<N>.jsonl), to check data parallelism. Alias: TUNEFORGE_TRACE_SAMPLES=1.", G)

# --- FP8 -----------------------------------------------------------------------------------------
declare("fp8", "bool", False, "FP8 mixed-precision training through accelerate's FP8 recipe (NVIDIA GPUs of "
        "CUDA compute capability >= 8.9: Ada Lovelace, Hopper or newer).", G)
declare("fp8_backend", "str", "auto", "FP8 backend: torchao, te (Transformer Engine), msamp, or auto (torchao, "
        "then Transformer Engine, whichever is installed).", G, choices=("auto", "torchao", "te", "msamp"))
declare("fp8_enable_fsdp_float8_all_gather", "bool", False, "FP8 all-gathers under FSDP2 (needs fp8 with the "
        "torchao backend).", G)

# --- Ray -----------------------------------------------------------------------------------------
# Ray Train runs the workers when USE_RAY=1 or ray_num_workers > 1 (train/launch/ray.py).
declare("ray_num_workers", "int", 1, "Workers for Ray training (Ray Train's TorchTrainer, one tuneforge training "
        "process per worker). More than 1, or USE_RAY=1, trains through Ray.", G)
declare("ray_init_kwargs", "dict", None, "Arguments for ray.init (a mapping or a JSON object string), e.g. "
        "{address: auto} to join a running cluster.", G)
declare("ray_run_name", "str", None, "Name of the Ray Train run; its state goes to <ray_storage_path>/<name>.", G)
declare("ray_storage_path", "str", "./saves", "Folder (or bucket path) where Ray Train keeps the run's state.", G)
declare("ray_storage_filesystem", "str", None, "Filesystem of ray_storage_path (default: local).", G,
        choices=("s3", "gs", "gcs"))
declare("resources_per_worker", "dict", None, "Ray resources each worker reserves (a mapping or a JSON object "
        "string). Default: {GPU: 1} where the Ray cluster has GPUs, else {CPU: 1}.", G)
declare("placement_strategy", "str", "PACK", "How Ray places the workers on its nodes.", G,
        choices=("SPREAD", "PACK", "STRICT_SPREAD", "STRICT_PACK"))
declare("master_addr", "str", None, "Address of the rank-0 node for init_process_group.", G, **LATER)
declare("master_port", "str", None, "Port of the rank-0 node for init_process_group.", G, **LATER)

# --- sequence parallelism (train/launch/sequence_parallel.py) ------------------------------------
declare("sequence_parallel_size", "int", 1, "Ranks that share one sequence (DeepSpeed-Ulysses all-to-all "
        "attention); 1: off.", G)
declare("sequence_parallel_mode", "str", "ulysses", "Sequence-parallel algorithm (ulysses: all-to-all over the "
        "attention heads).", G, choices=("ulysses",))

# --- torch profiler ------------------------------------------------------------------------------
declare("enable_torch_profiler", "bool", False, "Record torch profiler traces.", G, **LATER)
declare("profiler_output_dir", "str", None, "Folder for profiler traces (default: output_dir/profiler).", G,
        **LATER)
declare("profiler_wait_steps", "int", 1, "Profiler: steps skipped at the start of each cycle.", G, **LATER)
declare("profiler_warmup_steps", "int", 1, "Profiler: warm-up steps per cycle.", G, **LATER)
declare("profiler_active_steps", "int", 1, "Profiler: recorded steps per cycle.", G, **LATER)
declare("profiler_repeat", "int", 1, "Profiler: number of cycles (0: keep profiling).", G, **LATER)
declare("profiler_record_shapes", "bool", True, "Profiler: record tensor shapes.", G, **LATER)
declare("profiler_profile_memory", "bool", True, "Profiler: record memory use.", G, **LATER)
declare("profiler_with_stack", "bool", True, "Profiler: record stack traces.", G, **LATER)
declare("profile_modules", "str", None, "Comma-separated module name patterns (fnmatch wildcards) timed with "
        "CUDA events at each logging step.", G, **LATER)

# --- SwanLab -------------------------------------------------------------------------------------
declare("use_swanlab", "bool", False, "Log the run to SwanLab.", G)
declare("swanlab_project", "str", "llamafactory", "SwanLab project name.", G)
declare("swanlab_workspace", "str", None, "SwanLab workspace.", G)
declare("swanlab_run_name", "str", None, "SwanLab experiment name.", G)
declare("swanlab_mode", "str", "cloud", "Log to the SwanLab cloud or locally.", G, choices=("cloud", "local"))
declare("swanlab_api_key", "str", None, "SwanLab API key.", G)
declare("swanlab_logdir", "str", None, "SwanLab log folder.", G)
declare("swanlab_lark_webhook_url", "str", None, "Lark (Feishu) webhook notified by SwanLab.", G)
declare("swanlab_lark_secret", "str", None, "Secret of the Lark (Feishu) webhook.", G)

# --- KTransformers (AMX MoE SFT) -----------------------------------------------------------------
declare("use_kt", "bool", False, "Train MoE experts on the CPU with the KTransformers AMX backend.", G, **LATER)
declare("kt_weight_path", "str", None, "KTransformers: pre-quantized INT8 expert weights (.kt files).", G,
        **LATER)
declare("kt_expert_checkpoint_path", "str", None, "KTransformers: expert checkpoint (safetensors) converted "
        "on the fly.", G, **LATER)
declare("kt_use_lora_experts", "bool", None, "KTransformers: add LoRA experts on the GPU.", G, **LATER)
declare("kt_lora_expert_num", "int", None, "KTransformers: number of GPU LoRA experts.", G, **LATER)
declare("kt_lora_expert_intermediate_size", "int", None, "KTransformers: intermediate size of the GPU LoRA "
        "experts.", G, **LATER)
