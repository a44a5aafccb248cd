"""APOLLO: memory-light optimizer with low-rank approximated gradient scaling."""

from ..schema import declare

G = "apollo"

declare("use_apollo", "bool", False, "Use the APOLLO optimizer (not together with LoRA).", G)
declare("apollo_target", "list", "all", "Modules APOLLO applies to (comma-separated, or `all` linear "
        "layers).", G)
declare("apollo_rank", "int", 16, "Rank of the gradient approximation.", G)
declare("apollo_update_interval", "int", 200, "Steps between projection updates.", G)
declare("apollo_scale", "float", 32.0, "Scale applied to the update.", G)
declare("apollo_proj", "str", "random", "How the low-rank projection is built.", G, choices=("svd", "random"))
declare("apollo_proj_type", "str", "std", "Projection type.", G, choices=("std", "right", "left"))
declare("apollo_scale_type", "str", "channel", "Scaling granularity.", G, choices=("channel", "tensor"))
declare("apollo_layerwise", "bool", False, "Update each weight inside backward to save more memory (single "
        "device, no gradient accumulation).",
        G)
declare("apollo_scale_front", "bool", False, "Apply the norm-growth limiter before gradient scaling.", G)
