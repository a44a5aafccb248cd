"""GaLore: full-parameter training with low-rank projected gradients."""

from ..schema import declare

G = "galore"

declare("use_galore", "bool", False, "Use the GaLore optimizer (not together with LoRA).", G)
declare("galore_target", "list", "all", "Modules whose gradients are projected (comma-separated, or `all` "
        "linear layers).", G)
declare("galore_rank", "int", 16, "Rank of the projected gradients (a rank at or above a weight's smaller "
        "side compresses nothing).", G)
declare("galore_update_interval", "int", 200, "Steps between projection updates.", G)
declare("galore_scale", "float", 2.0, "Scale applied to the projected update.", G)
declare("galore_proj_type", "str", "std", "Projection type.", G,
        choices=("std", "reverse_std", "right", "left", "full"))
declare("galore_layerwise", "bool", False, "Update each weight inside backward to save more memory (single "
        "device, no gradient accumulation).",
        G)
