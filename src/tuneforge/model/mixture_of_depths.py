"""Mixture-of-depths (Raposo et al. 2024), LLaMA-Factory's `mixture_of_depths: convert | load`.

Every second decoder layer (1, 3, 5, ...; as LLaMA-Factory's MoD package converts) gets a router, a linear
map from the hidden state to one weight per token. In each sequence only the top `capacity` (12.5%) of tokens
by router weight go through that layer; the others skip it on the residual stream. A routed token's output is
x + w * (layer(x) - x), so the router learns through w.

Why our own: LLaMA-Factory calls the `mixture-of-depth` package (1.2.0, its newest), which cannot run on
transformers 5: `import MoD` fails (it imports `TRANSFORMERS_CACHE`, removed from transformers), its layer
wrapper takes `past_key_value` / `output_attentions` positionally (transformers 5 passes `cache=` and
`position_embeddings=` by keyword) and its `load` path ships copies of transformers 4 modeling files.
Differences from the package: a fixed capacity (the package anneals it from 1 to 0.125 over its first 1000
steps) and the residual kept out of the router weight (as the paper writes it).

`convert` adds the routers to a plain checkpoint and records them in config.json (`mixture_of_depths`);
`load` rebuilds them on such a checkpoint and loads their trained weights. Routing picks tokens from the
whole sequence, so a MoD model generates without a KV cache (each step recomputes the routed sequence).
"""

from __future__ import annotations

import json
import logging
import os
import types
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config.groups import ModelArgs

logger = logging.getLogger(__name__)

CAPACITY = 0.125
CONFIG_KEY = "mixture_of_depths"
# Decoder layers called as layer(hidden_states, attention_mask=, position_ids=, position_embeddings=, ...) at
# model.model.layers; LLaMA-Factory's list (bloom, falcon, phi, starcoder2 have other layouts) plus qwen2.
SUPPORTED = ("llama", "mistral", "mixtral", "gemma", "qwen2")


def check_mixture_of_depths(config: Any, args: ModelArgs) -> None:
    """Before the weights load: the model family supports it, and `load` finds a converted checkpoint."""
    mode = args.mixture_of_depths
    if mode is None:
        return
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED:
        raise ConfigError(f"mixture_of_depths: {mode} supports the model types {', '.join(SUPPORTED)}; this model "
                          f"is {model_type!r}. Remove mixture_of_depths")
    recorded = getattr(config, CONFIG_KEY, None)
    if mode == "load" and not recorded:
        raise ConfigError(f"mixture_of_depths: load needs a model converted to mixture-of-depths (its config.json "
                          f"has no {CONFIG_KEY!r} entry); use mixture_of_depths: convert to convert this one")
    if mode == "convert" and recorded:
        raise ConfigError("mixture_of_depths: convert, but this model is converted already (config.json has "
                          f"{CONFIG_KEY!r}); use mixture_of_depths: load")


def apply_mixture_of_depths(model: Any, args: ModelArgs, path: str) -> Any:
    """convert: add routers; load: add them and load their weights from the checkpoint at `path`."""
    mode = args.mixture_of_depths
    if mode is None:
        return model
    recorded = getattr(model.config, CONFIG_KEY, None) or {}
    layers = list(recorded.get("layers", range(1, len(decoder_layers(model)), 2)))
    capacity = float(recorded.get("capacity", CAPACITY))
    add_routers(model, layers, capacity)
    if mode == "load":
        _load_router_weights(model, path)
    logger.info("Mixture-of-depths (%s): routers on layers %s, capacity %.3f", mode, layers, capacity)
    return model


class TokenRouter(torch.nn.Linear):
    """hidden state -> one routing weight per token; `capacity` is the share of tokens the layer processes."""

    def __init__(self, hidden: int, capacity: float, reference: torch.Tensor):
        super().__init__(hidden, 1, device=reference.device, dtype=reference.dtype)
        self.capacity = capacity


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    return model.model.layers


def add_routers(model: Any, layers: list[int], capacity: float) -> None:
    all_layers = decoder_layers(model)
    hidden = model.config.hidden_size
    reference = next(model.parameters())
    for index in layers:
        layer = all_layers[index]
        layer.mod_router = TokenRouter(hidden, capacity, reference)
        layer.forward = types.MethodType(_routed_forward(type(layer).forward), layer)
    model.config.mixture_of_depths = {"capacity": capacity, "layers": list(layers)}
    model.config.use_cache = False  # routing picks tokens from the whole sequence (module docstring)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.use_cache = False


def _routed_forward(layer_forward: Any) -> Any:
    def forward(self: Any, hidden_states: torch.Tensor, attention_mask: Any = None, position_ids: Any = None,
                cache: Any = None, use_cache: bool | None = False, position_embeddings: Any = None,
                **kwargs: Any) -> torch.Tensor:
        if cache is not None:
            raise RuntimeError("a mixture-of-depths layer cannot use a KV cache; generate with use_cache=False")
        batch, length, width = hidden_states.shape
        weights = self.mod_router(hidden_states).squeeze(-1)  # [batch, length]
        count = max(1, int(self.mod_router.capacity * length))
        chosen = select_tokens(weights, count)  # [batch, count], in sequence order
        picked = _take(hidden_states, chosen)
        output = layer_forward(self, picked, attention_mask=_mask_for(attention_mask, chosen),
                               position_ids=None if position_ids is None else _take(position_ids, chosen),
                               cache=None, use_cache=False,
                               position_embeddings=tuple(_take(part, chosen) for part in position_embeddings),
                               **kwargs)
        output = output[0] if isinstance(output, tuple) else output
        routed = picked + _take(weights, chosen).unsqueeze(-1).to(picked.dtype) * (output - picked)
        return hidden_states.scatter(1, chosen.unsqueeze(-1).expand(-1, -1, width), routed)

    return forward


def select_tokens(weights: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` highest router weights of each row, sorted so causal order is kept."""
    return weights.topk(count, dim=1).indices.sort(dim=1).values


def _take(tensor: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """tensor[b, chosen[b], ...] for every row b (a batch of 1 broadcasts, as rotary embeddings may be)."""
    if tensor.shape[0] == 1 and chosen.shape[0] > 1:
        tensor = tensor.expand(chosen.shape[0], *tensor.shape[1:])
    index = chosen.view(*chosen.shape, *([1] * (tensor.dim() - 2))).expand(-1, -1, *tensor.shape[2:])
    return tensor.gather(1, index)


def _mask_for(mask: Any, chosen: torch.Tensor) -> Any:
    """The 4-D attention mask [batch, 1, query, key] cut to the chosen queries and keys; None stays None
    (causal attention over the chosen tokens, which keep their order)."""
    if not isinstance(mask, torch.Tensor):
        return None if mask is None else _unsupported_mask(mask)
    if mask.dim() != 4:
        return _unsupported_mask(mask)
    mask = mask.expand(chosen.shape[0], *mask.shape[1:])
    rows = chosen[:, None, :, None].expand(-1, mask.shape[1], -1, mask.shape[3])
    mask = mask.gather(2, rows)
    columns = chosen[:, None, None, :].expand(-1, mask.shape[1], mask.shape[2], -1)
    return mask.gather(3, columns)


def _unsupported_mask(mask: Any) -> Any:
    raise RuntimeError(f"mixture-of-depths: attention mask of type {type(mask).__name__} is not supported; use "
                       "flash_attn: sdpa or disabled (eager)")


def _load_router_weights(model: Any, path: str) -> None:
    from safetensors.torch import load_file

    expected = {name for name, _ in model.named_parameters() if ".mod_router." in name}
    found: dict[str, torch.Tensor] = {}
    for file in _weight_files(path):
        found.update({key: value for key, value in load_file(file).items() if ".mod_router." in key})
    missing = sorted(expected - set(found))
    if missing:
        raise ConfigError(f"mixture_of_depths: load found no trained router weights for {missing[:3]} in {path!r}; "
                          "the checkpoint was not saved from a mixture-of-depths run")
    model.load_state_dict(found, strict=False)


def _weight_files(path: str) -> list[str]:
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as handle:
            shards = sorted(set(json.load(handle)["weight_map"].values()))
        return [os.path.join(path, shard) for shard in shards]
    single = os.path.join(path, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    raise ConfigError(f"mixture_of_depths: load reads safetensors weights; {path!r} has none")
