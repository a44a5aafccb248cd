"""Configuration: parameter declarations, loading (YAML/JSON + overrides) and up-front validation."""

from .schema import Param, all_params, declare

__all__ = ["Param", "all_params", "declare"]
