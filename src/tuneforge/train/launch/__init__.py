"""Several processes: torchrun relaunch, rank setup, DeepSpeed and FSDP configs."""
