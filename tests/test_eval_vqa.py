"""Verifiable VQA: every answer re-derived by an independent solver; the checker is exact."""

from __future__ import annotations

import random
import re

import pytest

from visionzero.eval.heldout import EvalPair, build_eval_set
from visionzero.eval.vqa import evaluate_vqa, vqa_metrics
from visionzero.eval.vqa_questions import (
    CHART_TYPES,
    CLEVR_TYPES,
    Question,
    check_answer,
    vqa_questions,
)
from visionzero.pairs.manifest import PairRecord
from visionzero.rollout.types import Completion, Sampling
from visionzero.settings.schema import (
    CLEVR_COLORS,
    CLEVR_MATERIALS,
    CLEVR_SHAPES,
    CLEVR_SIZES,
    EvalSettings,
)

FRUIT = ["Apples", "Bananas", "Cherries", "Grapes", "Mangoes", "Plums", "Q1 2023", "Kiwis"]


# ------------------------------------------------------------------ synthetic records
def scene_record(i: int) -> PairRecord:
    rng = random.Random(i)
    scene = [
        {"color": rng.choice(CLEVR_COLORS[:4]), "shape": rng.choice(CLEVR_SHAPES), "size": rng.choice(CLEVR_SIZES),
         "material": rng.choice(CLEVR_MATERIALS), "x": 1.0, "y": 2.0, "bbox": [0, 0, 1, 1]}
        for _ in range(rng.randint(3, 6))
    ]  # few colours: repeats, so uniqueness and ties get exercised
    return PairRecord(f"clevr-{i}", "clevr", "eval", f"c{i}_a.png", f"c{i}_b.png", i, [], scene=scene)


def chart_record(i: int) -> PairRecord:
    rng = random.Random(1000 + i)
    kind = ["bar", "line", "pie"][i % 3]
    n = rng.randint(3, 7)
    labels = rng.sample(FRUIT, n)
    n_series = 2 if kind == "line" else 1
    series = [{"name": f"Shop {s}", "values": [rng.randint(1, 9) * 10 for _ in range(n)]} for s in range(n_series)]
    spec = {"kind": kind, "title": "t", "x_label": "Fruit", "y_label": "Crates", "labels": labels,
            "series": series, "colors": ["#000000"] * n, "legend": True}
    return PairRecord(f"chart-{i}", "chart", "eval", f"h{i}_a.png", f"h{i}_b.png", i, [], spec=spec)


RECORDS = [scene_record(i) for i in range(60)] + [chart_record(i) for i in range(45)]
BY_IMAGE = {f"/data/{r.original}": r for r in RECORDS}


# ------------------------------------------------------------------ an independent solver
def _attrs(phrase: str) -> list[str]:
    words = []
    for w in phrase.split():
        if w in ("object", "objects"):
            continue
        if w.endswith("s") and w[:-1] in CLEVR_SHAPES:
            w = w[:-1]
        words.append(w)
    return words


def _has(obj: dict, words: list[str]) -> bool:
    return all(w in (obj["color"], obj["shape"], obj["size"], obj["material"]) for w in words)


def solve_scene(text: str, scene: list[dict]) -> str:
    if m := re.fullmatch(r"How many (.+) are there\?", text):
        return str(sum(_has(o, _attrs(m[1])) for o in scene))
    if m := re.fullmatch(r"Is there an? (.+)\?", text):
        return "yes" if any(_has(o, _attrs(m[1])) for o in scene) else "no"
    if m := re.fullmatch(r"What (colour|shape) is the (.+)\?", text):
        found = [o for o in scene if _has(o, _attrs(m[2]))]
        assert len(found) == 1, f"ambiguous: {text}"
        return found[0]["color" if m[1] == "colour" else "shape"]
    if m := re.fullmatch(r"Are there more (.+) than (.+)\?", text):
        a, b = (sum(_has(o, _attrs(p)) for o in scene) for p in (m[1], m[2]))
        return "yes" if a > b else "no"
    raise AssertionError(f"unknown question {text!r}")


def solve_chart(text: str, spec: dict) -> str:
    labels = spec["labels"]

    def values(name: str | None) -> list[int]:
        return next(s["values"] for s in spec["series"] if name is None or s["name"] == name)

    if m := re.fullmatch(r"What percentage does (.+) have\?", text):
        vals = values(None)
        return str(round(100 * vals[labels.index(m[1])] / sum(vals)))
    if spec["kind"] == "line" and (m := re.fullmatch(r"What is the value of (.+) in (.+)\?", text)):
        return str(values(m[1])[labels.index(m[2])])
    if m := re.fullmatch(r"What is the value of (.+)\?", text):
        return str(values(None)[labels.index(m[1])])
    if m := re.fullmatch(r"(?:For (.+), which|Which) \w+ has the (largest|smallest) (?:value|share)\?", text):
        vals = values(m[1])
        best = max(vals) if m[2] == "largest" else min(vals)
        assert vals.count(best) == 1, f"tie: {text}"
        return labels[vals.index(best)]
    if m := re.fullmatch(r"(?:For (.+), which|Which) \w+ has the larger value: (.+) or (.+)\?", text):
        vals = values(m[1])
        a, b = vals[labels.index(m[2])], vals[labels.index(m[3])]
        assert a != b
        return m[2] if a > b else m[3]
    raise AssertionError(f"unknown question {text!r}")


def solve(q: Question, record: PairRecord) -> str:
    return solve_scene(q.text, record.scene) if record.domain == "clevr" else solve_chart(q.text, record.spec)


class SolverPolicy:
    """Answers from the record behind each request's image, via the independent solver."""

    def __init__(self, mistake: bool = False):
        self.mistake = mistake

    def generate(self, requests, sampling, seed=0):
        out = []
        for r in requests:
            image = r.messages[0]["content"][0]["image"]
            question = r.messages[0]["content"][1]["text"].split("? ")[0] + "?"
            record = BY_IMAGE[image]
            answer = solve_scene(question, record.scene) if record.domain == "clevr" else solve_chart(question, record.spec)
            if self.mistake:  # a plausible wrong answer of the same kind
                answer = {"yes": "no", "no": "yes"}.get(answer) or (
                    str(int(answer) + 7) if answer.isdigit() else "Nothing"
                )
            text = f"I look at the image carefully. \\boxed{{{answer}}}"
            out.append([Completion([], [1] * len(text.split()), text, True) for _ in range(sampling.n)])
        return out


@pytest.fixture(scope="module")
def questions():
    return vqa_questions([(r, f"/data/{r.original}") for r in RECORDS], per_type=30, seed=0)


# ------------------------------------------------------------------ tests
def test_every_answer_matches_an_independent_solution(questions):
    by_id = {r.id: r for r in RECORDS}
    assert {q.qtype for q in questions} == set(CLEVR_TYPES + CHART_TYPES)
    assert all(sum(q.qtype == t for q in questions) == 30 for t in CLEVR_TYPES + CHART_TYPES)
    for q in questions:
        assert solve(q, by_id[q.pair_id]) == q.answer, q


def test_yes_no_questions_are_balanced(questions):
    for qtype in ("clevr_exist", "clevr_compare"):
        answers = [q.answer for q in questions if q.qtype == qtype]
        assert answers.count("yes") == answers.count("no") == 15


def test_solver_policy_scores_100_and_a_wrong_one_0(questions):
    sampling = Sampling(max_new_tokens=16, temperature=0.0)
    right = vqa_metrics(evaluate_vqa(SolverPolicy(), questions, sampling, seed=0, batch_size=50))
    assert right["vqa/accuracy"] == 1.0 and right["vqa/answered_rate"] == 1.0
    assert right["vqa/questions"] == len(questions)
    assert all(right[f"vqa/{t}/accuracy"] == 1.0 for t in CLEVR_TYPES + CHART_TYPES)
    wrong = vqa_metrics(evaluate_vqa(SolverPolicy(mistake=True), questions, sampling, seed=0))
    assert wrong["vqa/accuracy"] == 0.0 and wrong["vqa/answered_rate"] == 1.0


@pytest.mark.parametrize(
    "response, answer, kind, tolerance, ok",
    [
        ("so \\boxed{3}", "3", "number", 0.0, True),
        ("\\boxed{three}", "3", "number", 0.0, True),
        ("\\boxed{3 objects}", "3", "number", 0.0, True),
        ("\\boxed{4}", "3", "number", 0.0, False),
        ("the answer is 3", "3", "number", 0.0, False),  # no box, no answer
        ("\\boxed{1,030}", "1000", "number", 0.05, True),  # ChartQA relaxed accuracy
        ("\\boxed{1060}", "1000", "number", 0.05, False),
        ("\\boxed{Yes, there is.}", "yes", "yes_no", 0.0, True),
        ("\\boxed{no}", "yes", "yes_no", 0.0, False),
        ("\\boxed{\\text{Cubes}}", "cube", "word", 0.0, True),
        ("\\boxed{the Q1 2023.}", "Q1 2023", "word", 0.0, True),
        ("\\boxed{Q2 2023}", "Q1 2023", "word", 0.0, False),
        ("<answer>red</answer>", "red", "word", 0.0, True),
        ("\\boxed{}", "red", "word", 0.0, False),
    ],
)
def test_checker(response, answer, kind, tolerance, ok):
    q = Question("q", "p", "clevr", "t", "img.png", "?", answer, kind, tolerance)
    assert check_answer(response, q) is ok


def test_set_is_seeded_and_fixed():
    pairs = [EvalPair(r.id, r.domain, f"/data/{r.original}", f"/data/{r.edited}", r) for r in RECORDS]
    a = build_eval_set(pairs, EvalSettings(games=4, vqa_per_type=5, seed=3))
    b = build_eval_set(pairs, EvalSettings(games=4, vqa_per_type=5, seed=3))
    c = build_eval_set(pairs, EvalSettings(games=4, vqa_per_type=5, seed=4))
    assert a.questions == b.questions and a.fingerprint() == b.fingerprint()
    assert a.questions != c.questions and a.fingerprint() != c.fingerprint()
    assert [p.id for p in a.pairs] == [f"clevr-{i}" for i in range(4)] + [f"chart-{i}" for i in range(4)]
    photos_only = [EvalPair("p", "photo", "a.png", "b.png", PairRecord("p", "photo", "eval", "a", "b", 0, []))]
    assert build_eval_set(photos_only, EvalSettings()).questions == []
