"""Export parameters: merging adapters and writing the model out (optionally quantized or to the hub)."""

from ..schema import declare

G = "export"
declare("export_dir", "str", None, "Directory the exported model is written to.", G)
declare("export_size", "int", 5, "Largest weight shard file, in GB.", G)
declare("export_device", "str", "cpu", "Device the adapters are merged on; `auto` uses the accelerator when there is one.", G,
        choices=("cpu", "auto"))
declare("export_quantization_bit", "int", None, "Quantize the exported model to this many bits (GPTQ: "
        "2, 3, 4 or 8; needs a CUDA GPU with optimum and gptqmodel).", G)
declare("export_quantization_dataset", "str", None, "Dataset (path or name) used to calibrate the export "
        "quantization.", G)
declare("export_quantization_nsamples", "int", 128, "Calibration samples for export quantization.", G)
declare("export_quantization_maxlen", "int", 1024, "Longest calibration input for export quantization.", G)
declare("export_legacy_format", "bool", False, "Write `.bin` weight files instead of `.safetensors`.", G)
declare("export_hub_model_id", "str", None, "Hub repository to push the exported model to.", G)
declare("export_gguf", "str", None, "Also write a GGUF file (llama.cpp / Ollama) of the exported weights in "
        "this type: f32, f16 or q8_0 (llama and qwen2 models with a byte-level BPE tokenizer). tuneforge only.",
        G, choices=("f32", "f16", "q8_0"))
