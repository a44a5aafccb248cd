"""Export parameters: merging adapters and writing the model out (optionally quantized or to the hub)."""

from ..schema import declare

G = "export"
LATER = {"implemented": False}

declare("export_dir", "str", None, "Directory the exported model is written to.", G, **LATER)
declare("export_size", "int", 5, "Largest weight shard file, in GB.", G, **LATER)
declare("export_device", "str", "cpu", "Device used while exporting; `auto` uses the accelerator.", G,
        choices=("cpu", "auto"), **LATER)
declare("export_quantization_bit", "int", None, "Quantize the exported model to this many bits (GPTQ).", G,
        **LATER)
declare("export_quantization_dataset", "str", None, "Dataset (path or name) used to calibrate the export "
        "quantization.", G, **LATER)
declare("export_quantization_nsamples", "int", 128, "Calibration samples for export quantization.", G, **LATER)
declare("export_quantization_maxlen", "int", 1024, "Longest calibration input for export quantization.", G,
        **LATER)
declare("export_legacy_format", "bool", False, "Write `.bin` weight files instead of `.safetensors`.", G, **LATER)
declare("export_hub_model_id", "str", None, "Hub repository to push the exported model to.", G, **LATER)
