"""The policy interface shared by every generation backend (HF transformers, vLLM)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class ChatLike(Protocol):
    """Anything carrying Hugging Face multimodal chat messages.

    Image parts are `{"type": "image", "image": ref}` where ref is a file path or
    `blank:<W>x<H>`; the backend materialises them.
    """

    messages: list[dict[str, Any]]


@dataclass(frozen=True)
class Sampling:
    """How to sample one batch; built from a `GenerationSettings` section."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1  # samples per request (the observer's G votes)

    @property
    def greedy(self) -> bool:
        """Temperature 0 (or below): the argmax token at every step, so every sample is the same."""
        return self.temperature <= 0

    @classmethod
    def from_settings(cls, gen, n: int = 1) -> "Sampling":
        return cls(gen.max_new_tokens, gen.temperature, gen.top_p, gen.top_k, n)


@dataclass
class Completion:
    """One sampled completion: token ids include the end-of-turn token when it was emitted."""

    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    finished: bool  # True when it stopped at end of turn, False when cut at max_new_tokens
    logprobs: list[float] | None = field(default=None)  # behaviour log-probs, if the backend has them


class Policy(Protocol):
    """Generate completions for a batch of chat requests (with images)."""

    def generate(self, requests: Sequence[ChatLike], sampling: Sampling, seed: int) -> list[list[Completion]]:
        """Return, for each request, `sampling.n` completions."""
        ...
