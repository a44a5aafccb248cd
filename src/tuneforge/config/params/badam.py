"""BAdam: block-coordinate Adam that updates one block of parameters at a time."""

from ..schema import declare

G = "badam"
LATER = {"implemented": False}

declare("use_badam", "bool", False, "Use the BAdam optimizer (not together with LoRA).", G, **LATER)
declare("badam_mode", "str", "layer", "Update blocks of whole layers, or a ratio of each weight.", G,
        choices=("layer", "ratio"), **LATER)
declare("badam_start_block", "int", None, "First block index for layer-wise BAdam.", G, **LATER)
declare("badam_switch_mode", "str", "ascending", "Order in which layer-wise BAdam visits blocks.", G,
        choices=("ascending", "descending", "random", "fixed"), nullable=True, **LATER)
declare("badam_switch_interval", "int", 50, "Steps between block switches (-1: never switch).", G,
        nullable=True, **LATER)
declare("badam_update_ratio", "float", 0.05, "Share of each weight updated by ratio-wise BAdam.", G, **LATER)
declare("badam_mask_mode", "str", "adjacent", "Ratio-wise BAdam: trainable entries adjacent or scattered.", G,
        choices=("adjacent", "scatter"), **LATER)
declare("badam_verbose", "int", 0, "0: silent, 1: print the active block, 2: also print trainable "
        "parameters.", G, **LATER)
