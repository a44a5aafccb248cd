"""Configuration: parameter declarations, loading (YAML/JSON + overrides) and up-front validation.

    cfg = load_config("run.yaml", ["learning_rate=5e-5"])   # or make_config({...}) from code
    check_implemented(cfg)                                   # before a command does its work
"""

from .config import Config
from .loader import check_implemented, load_config, make_config, param_for
from .schema import Param, all_params, declare

__all__ = ["Config", "Param", "all_params", "check_implemented", "declare", "load_config", "make_config",
           "param_for"]
