"""BAdam: block-coordinate Adam that updates one block of parameters at a time."""

from ..schema import declare

G = "badam"

declare("use_badam", "bool", False, "Use the BAdam optimizer (not together with LoRA).", G)
declare("badam_mode", "str", "layer", "Update blocks of whole layers, or a ratio of each weight.", G,
        choices=("layer", "ratio"))
declare("badam_start_block", "int", None, "Layer-wise BAdam: index of the first trained block (default: by switch mode).", G)
declare("badam_switch_mode", "str", "ascending", "Order in which layer-wise BAdam visits blocks.", G,
        choices=("ascending", "descending", "random", "fixed"), nullable=True)
declare("badam_switch_interval", "int", 50, "Layer-wise BAdam: steps between block switches (-1: never switch).", G,
        nullable=True)
declare("badam_update_ratio", "float", 0.05, "Share of each weight updated by ratio-wise BAdam.", G)
declare("badam_mask_mode", "str", "adjacent", "Ratio-wise BAdam: trainable entries adjacent or scattered.", G,
        choices=("adjacent", "scatter"))
declare("badam_verbose", "int", 0, "0: silent, 1: print the active block, 2: also print trainable "
        "parameters.", G)
