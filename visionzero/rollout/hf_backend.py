"""Generation with Hugging Face transformers `generate`: CPU and GPU, no extra process.

Batched, left-padded, micro-batched to bound memory. Two rules every caller relies on:
- the image/video pad tokens are never sampled (a stray `<|image_pad|>` in a completion makes
  the next forward pass fail: image features and image tokens no longer match);
- generation stops at the end-of-turn token, and that token stays in the completion ids
  (the update trains it; the released code dropped it);
- a sampled completion carries its behaviour log-probs: log-softmax of the raw logits at the
  sampling temperature, the quantity the update computes (`train/loss.token_logprobs`), so
  a multi-step update need not run the sampling policy over every sample again.
Each image is processed and run through the vision tower once while the weights stand
(`models/image_cache.py`): a rollout shows a seat's image in each of its turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from visionzero.models.image_cache import IMAGES
from visionzero.models.loading import LoadedModel
from visionzero.rollout.images import message_images
from visionzero.rollout.types import ChatLike, Completion, Sampling


class HFPolicy:
    """The `Policy` interface over a loaded transformers VLM."""

    def __init__(self, loaded: LoadedModel, micro_batch_size: int = 64):
        self.loaded = loaded
        self.micro_batch_size = micro_batch_size

    @property
    def device(self) -> torch.device:
        return next(self.loaded.model.parameters()).device

    def render(self, request: ChatLike) -> str:
        return self.loaded.processor.apply_chat_template(
            request.messages, tokenize=False, add_generation_prompt=True
        )

    def encode(self, requests: Sequence[ChatLike], encoded_images: bool = False) -> dict[str, Any]:
        """Tokenise a batch (left padding) with its images, ready for the model.
        `encoded_images`: the images as the vision tower's (cached) outputs, not pixels,
        where the model takes them."""
        texts = [self.render(r) for r in requests]
        images = [img for r in requests for img in message_images(r.messages)]
        batch = self.loaded.processor(
            text=texts, images=images or None, padding=True, return_tensors="pt"
        )
        batch = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}
        return IMAGES.in_place_of_pixels(self.loaded.model, images, batch) if encoded_images else batch

    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, seed: int = 0) -> list[list[Completion]]:
        per_call = max(1, self.micro_batch_size // sampling.n)  # bounds sequences per call
        outputs: list[list[Completion]] = []
        for start in range(0, len(requests), per_call):
            outputs.extend(self._generate_chunk(requests[start : start + per_call], sampling, seed + start))
        return outputs

    def _shared_prefix(self, batch: dict[str, Any], n: int) -> dict[str, Any]:
        """Encode each prompt ONCE and fork its KV cache n ways (the G votes share a prompt).

        The prompt minus its last token is run through the model; the cache, the 3-D rotary
        offsets and the text inputs are repeated n times; generate() then continues from the
        last prompt token. Same tokens as n separate copies, without n-fold prefill (the
        image encoder and the long observer prompt dominate the vote stage otherwise).
        """
        text_keys = ("input_ids", "attention_mask", "mm_token_type_ids")
        prefix = {k: v[:, :-1] if k in text_keys else v for k, v in batch.items()}
        model = self.loaded.model
        out = model(**prefix, use_cache=True)
        key = "cache" if "cache" in out else "past_key_values"  # renamed in transformers 5.2x
        cache = out[key]
        cache.batch_repeat_interleave(n)
        inner = getattr(model, "model", None)
        if getattr(inner, "rope_deltas", None) is not None:  # Qwen-VL: per-sequence M-RoPE offsets
            inner.rope_deltas = inner.rope_deltas.repeat_interleave(n, 0)
        expanded = {k: batch[k].repeat_interleave(n, 0) for k in text_keys if k in batch}
        return {**expanded, key: cache}

    def generation_config(self, sampling: Sampling):
        """Exactly the sampling settings of `sampling`, every other logits processor off.

        transformers fills each unset field from the checkpoint's generation_config.json
        (Qwen2.5-VL Instruct ships repetition_penalty 1.05, top_k 1) and then from global
        defaults (top_k 50): samples would come from another distribution than the one
        whose log-probs the update trains. So the sampling fields are set explicitly and
        `_generate_chunk` swaps in a neutral model config for the call.
        """
        from transformers import GenerationConfig

        greedy = sampling.greedy
        sampler = {} if greedy else dict(  # top_k 0 = off (unset would mean the default 50)
            temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
        )  # fmt: skip
        return GenerationConfig(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy,
            **sampler,
            suppress_tokens=self.loaded.suppressed_ids,
            eos_token_id=self.loaded.end_of_turn_id,
            pad_token_id=self.loaded.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_logits=not greedy,  # the behaviour log-probs (module docstring); greedy turns train nothing
        )  # fmt: skip

    @torch.inference_mode()
    def _generate_chunk(self, chunk: Sequence[ChatLike], sampling: Sampling, seed: int) -> list[list[Completion]]:
        from transformers import GenerationConfig

        batch = self.encode(chunk, encoded_images=True)
        eot = self.loaded.end_of_turn_id
        config = self.generation_config(sampling)
        torch.manual_seed(seed)
        inputs = self._shared_prefix(batch, sampling.n) if sampling.n > 1 else batch
        model = self.loaded.model
        # Fields left None are filled from model.generation_config: a neutral one stands in
        # for the checkpoint's during this call (the checkpoint's is kept for saving).
        saved, model.generation_config = model.generation_config, GenerationConfig()
        try:
            out = model.generate(**inputs, generation_config=config)
        finally:
            model.generation_config = saved
        prompt_len = batch["input_ids"].shape[1]
        new_tokens = out.sequences[:, prompt_len:]
        logprobs = None
        if config.output_logits and new_tokens.shape[1]:  # raw logits (before any processor), as training sees them
            raw = torch.stack(out.logits, 1).float() / sampling.temperature
            logprobs = torch.log_softmax(raw, -1).gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1).tolist()
        prompts = [ids[mask.bool()].tolist() for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]
        results: list[list[Completion]] = [[] for _ in chunk]
        for row in range(new_tokens.shape[0]):
            new = new_tokens[row].tolist()
            finished = eot in new
            ids = new[: new.index(eot) + 1] if finished else new
            text = self.loaded.tokenizer.decode(ids, skip_special_tokens=True)
            lp = logprobs[row][: len(ids)] if logprobs is not None else None
            results[row // sampling.n].append(Completion(prompts[row // sampling.n], ids, text, finished, lp))
        return results
