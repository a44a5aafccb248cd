"""Training: one recipe per stage (stages/: pt, sft, rm, dpo, kto, ppo) on the shared trainer (trainer.py).

    run_train(cfg) -> metrics      cfg: a Config from tuneforge.config, or a plain dict of values

Folders: stages/ (recipes), preference/ (rm/dpo/kto losses, trainer, reference model), batching/ (padding-free
rows, packed attention), optim/ (GaLore, APOLLO, BAdam, LoRA+), run/ (run directory, checkpoints, callbacks,
trainer log, plots), launch/ (torchrun, DeepSpeed, FSDP), evaluation/ (predict with generate, BLEU/ROUGE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lazy_exports import lazy_exports

if TYPE_CHECKING:
    from ..config import Config
    from .launch.deepspeed import DS_STAGES, zero_config
    from .launch.torchrun import launch_env
    from .run.trainer_log import TRAINER_LOG, read_trainer_log

# Stage -> (module, function). Imported lazily: `import tuneforge.train` stays cheap for the CLI.
RECIPES = {"pt": ("stages.pt", "run_pt"), "sft": ("stages.sft", "run_sft"), "rm": ("stages.rm", "run_rm"),
           "dpo": ("stages.dpo", "run_dpo"),
           "kto": ("stages.kto", "run_kto"), "ppo": ("stages.ppo", "run_ppo"), "grpo": ("stages.grpo", "run_grpo")}


def run_train(cfg: Config | dict[str, Any]) -> dict[str, float]:
    """Run the recipe for the stage; the run directory is output_dir. Returns the final metrics.

    A dict is validated exactly as a YAML file is (make_config, then the one validation path)."""
    import importlib

    from ..config import make_config
    from ..errors import ConfigError
    from ..validate import validate_config

    if isinstance(cfg, dict):
        cfg = make_config(cfg)
    validate_config(cfg)

    stage = cfg.method.stage
    if stage not in RECIPES:
        raise ConfigError(f"stage: {stage} training is not implemented yet; available stages: "
                          f"{', '.join(RECIPES)}")
    module_name, function_name = RECIPES[stage]
    module = importlib.import_module(f"{__name__}.{module_name}")
    metrics: dict[str, float] = getattr(module, function_name)(cfg)
    _leave_process_group()
    return metrics


def _leave_process_group() -> None:
    """A torchrun worker leaves its process group when its run is done. A gloo group left open until the
    interpreter exits can abort the process there ("terminate called without an active exception", exit -6)
    after a run that succeeded."""
    import sys

    from ..runtime import runtime

    if not runtime().is_distributed or "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # no rank tears the group down while another still uses it
        dist.destroy_process_group()


# Public entry points for the layers above (the web UI), imported on first use (module __getattr__) so that
# `import tuneforge.train` stays cheap. Re-exported name -> the module (under tuneforge.train) that defines it.
_LAZY_EXPORTS = {
    "DS_STAGES": "launch.deepspeed",
    "zero_config": "launch.deepspeed",
    "launch_env": "launch.torchrun",
    "TRAINER_LOG": "run.trainer_log",
    "read_trainer_log": "run.trainer_log",
}


__getattr__ = lazy_exports(__name__, _LAZY_EXPORTS)


__all__ = ["DS_STAGES", "TRAINER_LOG", "launch_env", "read_trainer_log", "run_train", "zero_config"]
