"""Ask a policy the verifiable VQA questions and score its answers per question type."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from visionzero.eval.vqa_questions import Question, boxed_answer, check_answer
from visionzero.rollout.engine import derive_seed
from visionzero.rollout.types import Policy, Sampling


@dataclass(frozen=True)
class VqaRequest:
    """A one-turn chat request; `game_id` carries the question id so wrappers can route on it."""

    messages: list[dict[str, Any]]
    game_id: str
    stage: str = "vqa"
    seat: int = 0


@dataclass(frozen=True)
class VqaAnswer:
    question: Question
    response: str
    answered: bool  # a boxed answer was found
    correct: bool


def vqa_request(question: Question) -> VqaRequest:
    content = [{"type": "image", "image": question.image}, {"type": "text", "text": question.prompt}]
    return VqaRequest([{"role": "user", "content": content}], question.id)


def evaluate_vqa(
    policy: Policy,
    questions: Sequence[Question],
    sampling: Sampling,
    seed: int,
    batch_size: int = 64,
    on_batch: Callable[[str], None] | None = None,
) -> list[VqaAnswer]:
    """One sampled answer per question, in batches of `batch_size` (batch k has a fixed seed)."""
    answers: list[VqaAnswer] = []
    for k, start in enumerate(range(0, len(questions), batch_size)):
        chunk = questions[start : start + batch_size]
        out = policy.generate([vqa_request(q) for q in chunk], sampling, derive_seed(seed, "vqa-batch", k))
        for q, (completion, *_) in zip(chunk, out):
            text = completion.text
            answers.append(VqaAnswer(q, text, boxed_answer(text) is not None, check_answer(text, q)))
        if on_batch:
            on_batch(f"vqa {start + len(chunk)}/{len(questions)}")
    return answers


def vqa_metrics(answers: Sequence[VqaAnswer], prefix: str = "vqa/") -> dict[str, float]:
    """Accuracy overall and per question type, the answered (boxed) rate and the counts."""
    if not answers:
        return {f"{prefix}questions": 0.0}
    by_type: dict[str, list[VqaAnswer]] = defaultdict(list)
    for a in answers:
        by_type[a.question.qtype].append(a)
    metrics = {
        f"{prefix}questions": float(len(answers)),
        f"{prefix}accuracy": sum(a.correct for a in answers) / len(answers),
        f"{prefix}answered_rate": sum(a.answered for a in answers) / len(answers),
    }
    for qtype, group in sorted(by_type.items()):
        metrics[f"{prefix}{qtype}/accuracy"] = sum(a.correct for a in group) / len(group)
        metrics[f"{prefix}{qtype}/questions"] = float(len(group))
    return metrics
