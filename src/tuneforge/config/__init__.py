"""Configuration: parameter declarations, loading (YAML/JSON + overrides) and up-front validation.

    cfg = load_config("run.yaml", ["learning_rate=5e-5"])   # or make_config({...}) from code
    cfg.data.cutoff_len, cfg.lora.lora_rank, cfg.train.learning_rate   # typed groups (groups.py)
    check_implemented(cfg)                                   # before a command does its work

Entry points validate through tuneforge.validate.validate_config, which adds the data-layer name checks.
"""

from .config import Config
from .hf_args import hf_params
from .loader import check_implemented, load_config, make_config, param_for
from .schema import GROUPS, Param, all_params, declare

__all__ = ["GROUPS", "Config", "Param", "all_params", "check_implemented", "declare", "hf_params", "load_config",
           "make_config", "param_for"]
