"""infer_backend: sglang. SGLang's offline engine (`sglang.Engine`) fed with our prompt token ids.

SGLang facts used (its documented offline API): `sglang.Engine(model_path=..., dtype, context_length,
mem_fraction_static, tp_size, trust_remote_code, lora_paths, lora_backend, **server_args)`;
`Engine.generate(input_ids=[ids, ...], sampling_params=[{...}, ...], lora_path=[...])` returns one dict per
prompt with "text", "output_ids" and meta_info["finish_reason"]["type"] ("stop" or "length").
Settings are LLaMA-Factory's: sglang_maxlen, sglang_mem_fraction, sglang_tp_size, sglang_config,
sglang_lora_backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .external import ExternalEngine, max_new_tokens


class SglangEngine(ExternalEngine):
    backend = "sglang"

    def _start(self) -> None:
        import sglang
        import torch

        model, infer = self.cfg.model, self.cfg.infer
        self.context_length = infer.sglang_maxlen
        server_args: dict[str, Any] = dict(
            model_path=model.model_name_or_path, trust_remote_code=model.trust_remote_code,
            dtype=infer.infer_dtype, context_length=infer.sglang_maxlen,
            mem_fraction_static=infer.sglang_mem_fraction,
            tp_size=infer.sglang_tp_size if infer.sglang_tp_size > 0 else max(torch.cuda.device_count(), 1),
            log_level="error",
        )
        if self.adapters:
            server_args.update(lora_paths=[self.adapters[0]], lora_backend=infer.sglang_lora_backend)
        server_args.update(infer.sglang_config or {})
        self.sgl = sglang.Engine(**server_args)

    def _run(self, prompts: list[list[int]], images: Any, sampling: dict[str, Any],
             stop: Sequence[str]) -> list[tuple[list[int], str, bool]]:
        params = [dict(
            temperature=sampling["temperature"], top_p=sampling["top_p"],
            top_k=sampling["top_k"] if sampling["top_k"] > 0 else -1,  # SGLang: -1 disables top-k
            repetition_penalty=sampling["repetition_penalty"], presence_penalty=sampling["presence_penalty"],
            stop=list(stop) or None, stop_token_ids=sampling["stop_token_ids"],
            max_new_tokens=max_new_tokens(sampling, prompt), skip_special_tokens=sampling["skip_special_tokens"],
        ) for prompt in prompts]
        lora = [self.adapters[0]] * len(prompts) if self.adapters else None
        results = self.sgl.generate(input_ids=prompts, sampling_params=params, lora_path=lora)
        return [(list(result.get("output_ids", [])), result["text"],
                 (result["meta_info"].get("finish_reason") or {}).get("type") == "stop") for result in results]
