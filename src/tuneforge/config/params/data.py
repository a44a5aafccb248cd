"""Data parameters (LLaMA-Factory's DataArguments, same names and defaults)."""

from ..schema import declare

G = "data"

declare("template", "str", None, "Chat template used to build prompts in training and inference. "
        "Unset: use the tokenizer's own Jinja chat template.", G)
declare("dataset", "list", None, "Dataset(s) for training: names from dataset_info.json or file paths. "
        "Comma-separated for several.", G)
declare("eval_dataset", "list", None, "Dataset(s) for evaluation, as `dataset`.", G)
declare("dataset_dir", "str", "data", "Folder holding dataset_info.json and the data files.", G)
declare("media_dir", "str", None, "Folder the image/video/audio paths are relative to. Defaults to `dataset_dir`.", G)
declare("cutoff_len", "int", 2048, "Maximum length of a tokenized example (prompt + response).", G)
declare("train_on_prompt", "bool", False, "Also compute the loss on prompt tokens (disables the prompt mask).", G)
declare("mask_history", "bool", False, "Train on the last turn only; earlier turns are masked.", G)
declare("streaming", "bool", False, "Stream the dataset instead of loading it (for data larger than memory).", G)
declare("buffer_size", "int", 16384, "Shuffle buffer size used with streaming.", G)
declare("mix_strategy", "str", "concat", "How several datasets are mixed.", G,
        choices=("concat", "interleave_under", "interleave_over", "interleave_once"))
declare("interleave_probs", "float_list", None, "Sampling probabilities per dataset for interleaved mixing "
        "(comma-separated floats).", G)
declare("overwrite_cache", "bool", False, "Ignore the preprocessing cache and tokenize again.", G)
declare("preprocessing_batch_size", "int", 1000, "Rows per batch in preprocessing.", G)
declare("preprocessing_num_workers", "int", None, "Processes used for preprocessing.", G)
declare("max_samples", "int", None, "Keep at most this many rows of each dataset.", G)
declare("eval_num_beams", "int", None, "Beams for generation during evaluation.", G)
declare("ignore_pad_token_for_loss", "bool", True, "Pad tokens get label -100 in the loss.", G)
declare("skip_invalid_rows", "bool", False, "Skip malformed rows (wrong JSON type, tools that are not JSON, "
        "messages that are not a list, ...) and count them in the report, instead of stopping the run. "
        "Rows with unusable content (an empty answer, wrong role order) are always skipped and counted.", G)
declare("val_size", "float", 0.0, "Validation split: a fraction in [0,1) or a row count.", G)
declare("eval_on_each_dataset", "bool", False, "Evaluate each eval dataset separately.", G)
declare("packing", "bool", None, "Pack sequences into cutoff_len blocks. On by default for stage pt.", G)
declare("neat_packing", "bool", False, "Packing without cross-attention between packed samples "
        "(turns packing on).", G)
declare("tool_format", "str", None, "Tool-call format override (default, qwen, llama3, glm4, mistral).", G)
declare("default_system", "str", None, "Override the template's default system prompt.", G)
declare("enable_thinking", "bool", True, "Thinking mode for reasoning templates (qwen3): False drops the "
        "thoughts and masks an empty thought block.", G, nullable=True)
declare("preserve_thinking", "bool", False, "Keep thinking content in historical turns for reasoning templates.", G)
declare("tokenized_path", "str", None, "Where to save (if absent) or load (if present) the tokenized dataset.", G)
declare("data_shared_file_system", "bool", False, "Datasets live on a file system shared by all nodes "
        "(preprocess once, not once per node).", G)
