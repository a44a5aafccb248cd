"""APOLLO: memory-light optimizer with low-rank approximated gradient scaling."""

from ..schema import declare

G = "apollo"
LATER = {"implemented": False}

declare("use_apollo", "bool", False, "Use the APOLLO optimizer (not together with LoRA).", G, **LATER)
declare("apollo_target", "list", "all", "Modules APOLLO applies to (comma-separated, or `all` linear "
        "layers).", G, **LATER)
declare("apollo_rank", "int", 16, "Rank of the gradient approximation.", G, **LATER)
declare("apollo_update_interval", "int", 200, "Steps between projection updates.", G, **LATER)
declare("apollo_scale", "float", 32.0, "Scale applied to the update.", G, **LATER)
declare("apollo_proj", "str", "random", "How the low-rank projection is built.", G, choices=("svd", "random"),
        **LATER)
declare("apollo_proj_type", "str", "std", "Projection type.", G, choices=("std", "right", "left"), **LATER)
declare("apollo_scale_type", "str", "channel", "Scaling granularity.", G, choices=("channel", "tensor"), **LATER)
declare("apollo_layerwise", "bool", False, "Update layer by layer to save more memory (single device only).",
        G, **LATER)
declare("apollo_scale_front", "bool", False, "Apply the norm-growth limiter before gradient scaling.", G,
        **LATER)
