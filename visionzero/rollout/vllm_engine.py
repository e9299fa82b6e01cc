"""The vLLM engine of the generation worker (GPU; runs only in the vLLM environment).

Written against vLLM 0.31 (`make vllm-env` installs that line). vLLM is imported inside
the engine's methods only, so this module imports anywhere and its request/response
translation (the pure functions below) is unit-tested on CPU. The engine itself needs a GPU.

What it keeps identical to the transformers backend (`hf_backend.py`):
- generation stops at the family's end-of-turn token and that token stays in the completion
  ids (vLLM appends a stop token to `token_ids` before it checks for the stop);
- the image/video pad tokens are never sampled (logit bias -100, vLLM's floor: exp(-100)
  is below float precision of any sampling step);
- every request gets its own seed (`seed + index`), so a batch reproduces whatever its size.
What it leaves out on purpose: behaviour log-probs. vLLM reports them before temperature
(its default `raw_logprobs` mode) and in bf16; the update recomputes them with the training
model instead, so the first PPO step's ratio is exactly 1 (as TRL does).

A new policy is loaded in place (`reload_weights` on every GPU worker, then the prefix
cache, whose KV entries the old weights computed, is dropped): no engine rebuild, no
CUDA-graph recapture, the pipeline never restarts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from visionzero.rollout.types import Completion, Sampling

SUPPRESS_BIAS = -100.0  # vLLM clamps logit_bias to [-100, 100]


def sampling_kwargs(sampling: Sampling, seed: int, end_of_turn_id: int, suppressed_ids: Sequence[int]) -> dict[str, Any]:
    """Keyword arguments of one request's `vllm.SamplingParams`."""
    greedy = sampling.greedy
    return {
        "n": sampling.n,
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "top_k": (sampling.top_k or -1) if not greedy else -1,  # -1 = off in every vLLM version
        "max_tokens": sampling.max_new_tokens,
        # Nothing but the settings above shapes the logits (no penalties, no min_p), as in
        # the transformers engine: the update trains the log-probs of exactly this sampler.
        "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "min_p": 0.0,
        "seed": seed,
        "stop_token_ids": [end_of_turn_id],
        "logit_bias": {int(t): SUPPRESS_BIAS for t in suppressed_ids},
        "skip_special_tokens": True,
        "logprobs": None,
    }


def vllm_conversation(messages: list[dict[str, Any]], load_image: Callable[[Any], Any]) -> list[dict[str, Any]]:
    """Our chat messages with image references -> vLLM's, with the images inline (`image_pil`)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [
                {"type": "image_pil", "image_pil": load_image(part.get("image"))} if part.get("type") == "image" else part
                for part in content
            ]  # fmt: skip
        out.append({**message, "content": content})
    return out


def completions_from_outputs(outputs: Sequence[Any], end_of_turn_id: int) -> list[list[Completion]]:
    """vLLM `RequestOutput`s -> our completions (one list of n per request, request order)."""
    results = []
    for out in outputs:
        prompt = list(out.prompt_token_ids)
        results.append([
            Completion(prompt, list(c.token_ids), c.text, bool(c.token_ids) and c.token_ids[-1] == end_of_turn_id)
            for c in out.outputs
        ])  # fmt: skip
    return results


def adapter_error(path: str | Path) -> str | None:
    """Why `path` cannot be served by this engine, or None."""
    if (Path(path) / "adapter_config.json").exists():
        return (f"{path} holds a LoRA adapter; the vLLM worker serves full models only "
                "(set train.lora.enabled=false or rollout.worker_engine=hf)")  # fmt: skip
    return None


def special_token_ids(path: str | Path, tokenizer) -> tuple[int, list[int]]:
    """(end-of-turn id, ids never to sample) for the model family of `path`."""
    from visionzero.models.families import family_for_model_type

    family = family_for_model_type(json.loads((Path(path) / "config.json").read_text())["model_type"])
    return family.end_of_turn_id(tokenizer), family.suppressed_ids(tokenizer)


class VllmEngine:
    """vLLM's offline `LLM` behind the worker's generate/load calls."""

    def __init__(self, path: str, gpu_memory_utilization: float = 0.4, seed: int = 0):
        from vllm import LLM

        self._check(path)
        self.llm = LLM(
            model=path, gpu_memory_utilization=gpu_memory_utilization, seed=seed,
            limit_mm_per_prompt={"image": 1, "video": 0},  # one image per game prompt; no video profiling
            generation_config="vllm",  # ignore the checkpoint's generation_config.json sampling defaults
        )  # fmt: skip
        self.end_of_turn_id, self.suppressed_ids = special_token_ids(path, self.llm.get_tokenizer())

    @staticmethod
    def _check(path: str) -> None:
        if (reason := adapter_error(path)) is not None:
            raise ValueError(reason)

    def load(self, path: str) -> None:
        self._check(path)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": path})
        self.llm.reset_prefix_cache()  # cached KV was computed by the previous weights

    def generate(self, requests: Sequence[Any], sampling: Sampling, seed: int) -> list[list[Completion]]:
        from vllm import SamplingParams

        from visionzero.rollout.images import load_image

        params = [SamplingParams(**sampling_kwargs(sampling, seed + i, self.end_of_turn_id, self.suppressed_ids))
                  for i in range(len(requests))]  # fmt: skip
        conversations = [vllm_conversation(r.messages, load_image) for r in requests]
        outputs = self.llm.chat(conversations, params, use_tqdm=False)
        return completions_from_outputs(outputs, self.end_of_turn_id)
