"""`tuneforge export cfg.yaml`: merge LoRA adapters into the base and write a model others can load.

    run_export(cfg) -> export_dir

Steps (export/run.py): check everything up front -> load base + merge adapters on `export_device`
(export/merge.py) -> optional GPTQ quantization (export/gptq.py) -> weights in `export_size` GB shards,
tokenizer with its chat template, Ollama Modelfile (export/save.py) -> optional GGUF file
(export/gguf_file.py) -> optional push to `export_hub_model_id` (export/hub.py).
"""

from .run import run_export

__all__ = ["run_export"]
