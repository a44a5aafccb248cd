"""LoRA family (LoRA, DoRA, rsLoRA, PiSSA, LoRA+) and OFT adapters.

`lora_alpha` has a computed default (2 x lora_rank), applied by the validator.
"""

from typing import Any

from ..schema import declare

LATER: dict[str, Any] = {"implemented": False}

G = "lora"
declare("lora_rank", "int", 8, "Rank of the LoRA update matrices.", G)
declare("lora_alpha", "int", None, "LoRA scale numerator; unset means 2 x lora_rank.", G)
declare("lora_dropout", "float", 0.0, "Dropout on the LoRA input.", G)
declare("lora_target", "list", "all", "Modules that get LoRA adapters (comma-separated names, or `all` "
        "for every linear layer).", G)
declare("additional_target", "list", None, "Modules besides the adapters that are trained and saved in full "
        "(comma-separated, e.g. embed_tokens,lm_head).", G)
declare("loraplus_lr_ratio", "float", None, "LoRA+: learning-rate ratio of the B matrices to the A "
        "matrices.", G)
declare("loraplus_lr_embedding", "float", 1e-6, "LoRA+: learning rate of LoRA embedding layers.", G)
declare("use_rslora", "bool", False, "rsLoRA: scale by alpha / sqrt(rank) instead of alpha / rank.", G)
declare("use_dora", "bool", False, "DoRA: weight-decomposed LoRA (a trained magnitude vector per adapted "
        "layer).", G)
declare("pissa_init", "bool", False, "PiSSA: initialise the adapter from the principal singular vectors.", G)
declare("pissa_iter", "int", 16, "PiSSA: fast-SVD iterations (-1 = exact SVD).", G)
declare("pissa_convert", "bool", False, "PiSSA: also save the trained adapter converted to a plain LoRA "
        "adapter for the original model (output_dir/pissa_converted).", G)
declare("create_new_adapter", "bool", False, "Add a fresh adapter on top of the loaded one instead of "
        "training it further.", G)

G = "oft"
declare("oft_rank", "int", 0, "OFT: number of orthogonal blocks per layer (set this or oft_block_size, the "
        "other 0).", G)
declare("oft_block_size", "int", 32, "OFT: size of each orthogonal block (set this or oft_rank, the other 0). A "
        "size that does not divide a targeted layer's input width is moved by peft to the nearest divisor for "
        "that layer, as in LLaMA-Factory; each move is logged as a warning naming the layers.", G)
declare("oft_target", "list", "all", "Modules that get OFT adapters (comma-separated names, or `all` for every "
        "linear layer).", G)
declare("module_dropout", "float", 0.0, "OFT: probability of dropping a whole orthogonal block in training.", G)
