"""Training: one recipe per stage (pt.py, sft.py, rm.py, dpo.py, kto.py) on the shared trainer (trainer.py).

    run_train(cfg) -> metrics      cfg: a Config from tuneforge.config, or a plain dict of values
"""

from __future__ import annotations

from typing import Any

# Stage -> (module, function). Imported lazily: `import tuneforge.train` stays cheap for the CLI.
RECIPES = {"pt": ("stages.pt", "run_pt"), "sft": ("stages.sft", "run_sft"), "rm": ("stages.rm", "run_rm"),
           "dpo": ("stages.dpo", "run_dpo"),
           "kto": ("stages.kto", "run_kto"), "ppo": ("stages.ppo", "run_ppo")}


def run_train(cfg: Any) -> dict[str, float]:
    """Run the recipe for cfg.stage; the run directory is cfg.output_dir. Returns the final metrics."""
    import importlib

    from ..errors import ConfigError

    if isinstance(cfg, dict):
        from ..config import make_config

        cfg = make_config(cfg)
    from ..config import check_implemented

    check_implemented(cfg)

    if cfg.finetuning_type == "oft":  # declared for LLaMA-Factory compatibility; its feature comes later
        raise ConfigError("not implemented yet: finetuning_type: oft; use lora, freeze or full")
    stage = getattr(cfg, "stage", "sft")
    if stage not in RECIPES:
        raise ConfigError(f"stage: {stage} training is not implemented yet; available stages: "
                          f"{', '.join(RECIPES)}")
    module_name, function_name = RECIPES[stage]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, function_name)(cfg)


__all__ = ["run_train"]
