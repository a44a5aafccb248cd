"""infer_backend: vllm. vLLM's offline engine (`vllm.LLM`) fed with our prompt token ids.

vLLM facts used (its documented offline API): `LLM(model=..., dtype, max_model_len, gpu_memory_utilization,
enforce_eager, tensor_parallel_size, enable_lora, max_lora_rank, trust_remote_code, **engine_args)`;
`LLM.generate([{"prompt_token_ids": ids}], SamplingParams(...), lora_request=LoRARequest(name, id, path))`;
each result's `outputs[0]` has `text`, `token_ids` and `finish_reason` ("stop" or "length").
Settings are LLaMA-Factory's: vllm_maxlen, vllm_gpu_util, vllm_enforce_eager, vllm_max_lora_rank, vllm_config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .external import ExternalEngine, max_new_tokens


class VllmEngine(ExternalEngine):
    backend = "vllm"

    def _start(self) -> None:
        import torch
        from vllm import LLM

        model, infer = self.cfg.model, self.cfg.infer
        self.context_length = infer.vllm_maxlen
        engine_args: dict[str, Any] = dict(
            model=model.model_name_or_path, trust_remote_code=model.trust_remote_code,
            dtype=infer.infer_dtype, max_model_len=infer.vllm_maxlen,
            gpu_memory_utilization=infer.vllm_gpu_util, enforce_eager=infer.vllm_enforce_eager,
            tensor_parallel_size=max(torch.cuda.device_count(), 1),
            enable_lora=bool(self.adapters), max_lora_rank=infer.vllm_max_lora_rank,
        )
        engine_args.update(infer.vllm_config or {})
        self.llm = LLM(**engine_args)
        self.lora_request = None
        if self.adapters:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("default", 1, self.adapters[0])

    def _run(self, prompts: list[list[int]], images: Any, sampling: dict[str, Any],
             stop: Sequence[str]) -> list[tuple[list[int], str, bool]]:
        from vllm import SamplingParams

        params = [SamplingParams(
            n=1, temperature=sampling["temperature"], top_p=sampling["top_p"],
            top_k=sampling["top_k"] if sampling["top_k"] > 0 else -1,  # vLLM: -1 disables top-k
            repetition_penalty=sampling["repetition_penalty"], presence_penalty=sampling["presence_penalty"],
            stop=stop or None, stop_token_ids=sampling["stop_token_ids"],
            max_tokens=max_new_tokens(sampling, prompt), skip_special_tokens=sampling["skip_special_tokens"],
        ) for prompt in prompts]
        results = self.llm.generate([{"prompt_token_ids": prompt} for prompt in prompts], params,
                                    lora_request=self.lora_request, use_tqdm=False)
        return [(list(result.outputs[0].token_ids), result.outputs[0].text, result.outputs[0].finish_reason == "stop")
                for result in results]
