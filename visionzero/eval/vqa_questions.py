"""Verifiable VQA: questions with exact answers, built from the generators' own records.

CLEVR-style scene graphs give counting, existence, attribute queries and count comparisons;
chart specs give values, the largest/smallest category and two-way comparisons. Every
answer is computed from the record of the ORIGINAL image, so no label is ever needed.
Answers are read from the first `\\boxed{}`. This is the offline stand-in for the paper's
reasoning and chart benchmarks (CLEVR-style counting, ChartQA).

Pure Python: no torch, no model.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from visionzero.game.parsing import parse_clue
from visionzero.rollout.engine import derive_seed
from visionzero.settings.schema import CLEVR_COLORS, CLEVR_SHAPES

AnswerKind = Literal["number", "yes_no", "word"]
# ChartQA's relaxed accuracy: a value read off a chart counts within 5% of the truth.
CHART_VALUE_TOLERANCE = 0.05

CLEVR_TYPES = ("clevr_count", "clevr_exist", "clevr_query_color", "clevr_query_shape", "clevr_compare")
CHART_TYPES = ("chart_value", "chart_extreme", "chart_compare")
QTYPES = CLEVR_TYPES + CHART_TYPES

_HINT = {
    "number": "Answer with a number inside \\boxed{}, e.g. \\boxed{3}.",
    "yes_no": "Answer yes or no inside \\boxed{}, e.g. \\boxed{yes}.",
    "word": "Answer with the word or label only, inside \\boxed{}.",
}


@dataclass(frozen=True)
class Question:
    """One question about one image, with its exact answer and how to check it."""

    id: str
    pair_id: str
    domain: str
    qtype: str
    image: str  # the original image of the pair (the one the record describes)
    text: str
    answer: str
    kind: AnswerKind
    tolerance: float = 0.0  # relative tolerance of number answers; 0 = exact

    @property
    def prompt(self) -> str:
        return f"{self.text} {_HINT[self.kind]}"


_Draft = tuple[str, str, AnswerKind, float]  # text, answer, kind, tolerance


# ---------------------------------------------------------------- answer checking
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_NUMBER_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
_WRAPPER = re.compile(r"^\\(?:text|textbf|mathrm|mathbf)\{(.*)\}$", re.S)


def boxed_answer(text: str) -> str | None:
    """The first `\\boxed{}` content (else `<answer>` tags), as for clues; None when absent."""
    clue = parse_clue(text)
    if not clue.valid:
        return None
    content = clue.text.strip()
    m = _WRAPPER.match(content)
    return m.group(1).strip() if m else content


def normalize(answer: str) -> str:
    """Lower case, no surrounding punctuation or leading article, single spaces."""
    s = " ".join(answer.lower().split()).strip(" .,:;!?\"'`$%")
    for article in ("the ", "a ", "an "):
        if s.startswith(article):
            s = s[len(article) :]
    return s


def _number(s: str) -> float | None:
    """The first number in `s` ("1,200" -> 1200); a lone number word ("three") counts too."""
    m = _NUMBER.search(s.replace(",", ""))
    if m:
        return float(m.group())
    word = _NUMBER_WORDS.get(s.split(" ", 1)[0])
    return None if word is None else float(word)


def check_answer(response: str, question: Question) -> bool:
    """Whether a model's full response answers `question` correctly (never raises)."""
    got = boxed_answer(response)
    if got is None:
        return False
    got = normalize(got)
    want = normalize(question.answer)
    if question.kind == "number":
        value, truth = _number(got), float(question.answer)
        if value is None:
            return False
        return abs(value - truth) <= question.tolerance * abs(truth) if question.tolerance else value == truth
    if question.kind == "yes_no":
        m = re.match(r"[a-z]+", got)
        return bool(m) and m.group() == want
    # a plural form names the same category ("cubes" for "cube")
    return got == want or got == want + "s"


# ---------------------------------------------------------------- CLEVR scene graphs
def _a(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _count(scene: list[dict], **attrs: str) -> int:
    return sum(all(o[k] == v for k, v in attrs.items()) for o in scene)


def _noun(attrs: dict[str, str], plural: bool = False) -> str:
    """'small red metal cube', or 'red object' when no shape is given."""
    words = [attrs[k] for k in ("size", "color", "material") if k in attrs]
    shape = attrs.get("shape", "object")
    return " ".join(words + [shape + ("s" if plural else "")])


def _clevr_count(scene: list[dict], rng: random.Random, k: int) -> _Draft | None:
    obj = rng.choice(scene)
    keys = rng.choice([("color",), ("shape",), ("color", "shape")])
    attrs = {key: obj[key] for key in keys}
    return f"How many {_noun(attrs, plural=True)} are there?", str(_count(scene, **attrs)), "number", 0.0


def _clevr_exist(scene: list[dict], rng: random.Random, k: int) -> _Draft | None:
    """Even k asks about an object that is there, odd k about one that is not (balanced yes/no)."""
    present = {(o["color"], o["shape"]) for o in scene}
    if k % 2 == 0:
        color, shape = rng.choice(sorted(present))
    else:
        absent = [(c, s) for c in CLEVR_COLORS for s in CLEVR_SHAPES if (c, s) not in present]
        if not absent:
            return None
        color, shape = rng.choice(absent)
    answer = "yes" if (color, shape) in present else "no"
    return f"Is there {_a(_noun({'color': color, 'shape': shape}))}?", answer, "yes_no", 0.0


# Descriptions tried to single out one object, shortest first.
_WITHOUT_COLOR = (("shape",), ("size", "shape"), ("material", "shape"), ("size", "material", "shape"))
_WITHOUT_SHAPE = (("color",), ("size", "color"), ("color", "material"), ("size", "color", "material"))


def _unique_description(scene: list[dict], obj: dict, options: Sequence[tuple[str, ...]]) -> dict | None:
    for keys in options:
        attrs = {k: obj[k] for k in keys}
        if _count(scene, **attrs) == 1:
            return attrs
    return None


def _clevr_query(target: str, options: Sequence[tuple[str, ...]]) -> Callable[[list[dict], random.Random, int], _Draft | None]:
    def make(scene: list[dict], rng: random.Random, k: int) -> _Draft | None:
        found = [(o, d) for o in scene if (d := _unique_description(scene, o, options)) is not None]
        if not found:
            return None
        obj, attrs = rng.choice(found)
        word = "colour" if target == "color" else target
        return f"What {word} is the {_noun(attrs)}?", obj[target], "word", 0.0

    return make


def _clevr_compare(scene: list[dict], rng: random.Random, k: int) -> _Draft | None:
    """Two colours (or shapes) with different counts; even k puts the larger first (balanced yes/no)."""
    key = rng.choice(["color", "shape"])
    vocab = CLEVR_COLORS if key == "color" else CLEVR_SHAPES
    values = sorted({o[key] for o in scene} | {rng.choice(vocab)})  # an absent one may join, count 0
    pairs = [(a, b) for a in values for b in values if _count(scene, **{key: a}) > _count(scene, **{key: b})]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    if k % 2:
        a, b = b, a
    na, nb = _count(scene, **{key: a}), _count(scene, **{key: b})
    noun_a, noun_b = _noun({key: a}, plural=True), _noun({key: b}, plural=True)
    return f"Are there more {noun_a} than {noun_b}?", "yes" if na > nb else "no", "yes_no", 0.0


# ---------------------------------------------------------------- chart specs
def _pie_percent(values: list[int], i: int) -> str:
    """The percentage the pie prints for wedge i (matplotlib autopct "%1.0f%%")."""
    return "%1.0f" % (100.0 * (values[i] / sum(values)))


def _series(spec: dict[str, Any], rng: random.Random) -> tuple[str | None, list[int]]:
    """A line chart's series (name, values); bar and pie have one unnamed series."""
    if spec["kind"] == "line":
        s = rng.choice(spec["series"])
        return s["name"], list(s["values"])
    return None, list(spec["series"][0]["values"])


def _chart_value(spec: dict[str, Any], rng: random.Random, k: int) -> _Draft | None:
    name, values = _series(spec, rng)
    i = rng.randrange(len(values))
    label = spec["labels"][i]
    if spec["kind"] == "pie":
        return f"What percentage does {label} have?", _pie_percent(values, i), "number", CHART_VALUE_TOLERANCE
    where = f"{name} in {label}" if name else label
    return f"What is the value of {where}?", str(values[i]), "number", CHART_VALUE_TOLERANCE


def _chart_extreme(spec: dict[str, Any], rng: random.Random, k: int) -> _Draft | None:
    name, values = _series(spec, rng)
    for word, pick in rng.sample([("largest", max), ("smallest", min)], 2):
        best = pick(values)
        if values.count(best) == 1:  # a tie has no single answer
            label = spec["labels"][values.index(best)]
            what = spec["x_label"].lower()
            if name:
                return f"For {name}, which {what} has the {word} value?", label, "word", 0.0
            measure = "share" if spec["kind"] == "pie" else "value"
            return f"Which {what} has the {word} {measure}?", label, "word", 0.0
    return None


def _chart_compare(spec: dict[str, Any], rng: random.Random, k: int) -> _Draft | None:
    name, values = _series(spec, rng)
    pairs = [(i, j) for i in range(len(values)) for j in range(len(values)) if i != j and values[i] != values[j]]
    if not pairs:
        return None
    i, j = rng.choice(pairs)
    a, b = spec["labels"][i], spec["labels"][j]
    answer = a if values[i] > values[j] else b
    what = spec["x_label"].lower()
    lead = f"For {name}, which" if name else "Which"
    return f"{lead} {what} has the larger value: {a} or {b}?", answer, "word", 0.0


# Each maker gets the record's data, the rng and the question's index k within its type.
_CLEVR: dict[str, Callable[[list[dict], random.Random, int], _Draft | None]] = {
    "clevr_count": _clevr_count,
    "clevr_exist": _clevr_exist,
    "clevr_query_color": _clevr_query("color", _WITHOUT_COLOR),
    "clevr_query_shape": _clevr_query("shape", _WITHOUT_SHAPE),
    "clevr_compare": _clevr_compare,
}
_CHART: dict[str, Callable[[dict[str, Any], random.Random, int], _Draft | None]] = {
    "chart_value": _chart_value,
    "chart_extreme": _chart_extreme,
    "chart_compare": _chart_compare,
}


# ---------------------------------------------------------------- question sets
def questions_for_record(record: Any, image: str, qtype: str, rng: random.Random, index: int = 0) -> Question | None:
    """One question of `qtype` about `record`'s original image; None when the record has none."""
    if qtype in _CLEVR and record.domain == "clevr" and record.scene:
        draft = _CLEVR[qtype](record.scene, rng, index)
    elif qtype in _CHART and record.domain == "chart" and record.spec:
        draft = _CHART[qtype](record.spec, rng, index)
    else:
        return None
    if draft is None:
        return None
    text, answer, kind, tolerance = draft
    return Question(f"{qtype}-{index:04d}-{record.id}", record.id, record.domain, qtype, image, text, answer, kind, tolerance)


def vqa_questions(records: Sequence[tuple[Any, str]], per_type: int, seed: int) -> list[Question]:
    """Up to `per_type` distinct questions of every type the records support.

    `records` are (PairRecord, absolute original image path). Records are visited in a
    seeded order and cycled, one question per visit, so questions spread over images.
    """
    out: list[Question] = []
    if per_type <= 0:
        return out
    for qtype in QTYPES:
        rng = random.Random(derive_seed(seed, "vqa", qtype))
        order = list(records)
        rng.shuffle(order)
        seen: set[tuple[str, str]] = set()
        made: list[Question] = []
        for visit in range(len(order) * 4):  # revisits give new questions on small sets
            if len(made) == per_type:
                break
            record, image = order[visit % len(order)]
            q = questions_for_record(record, image, qtype, rng, len(made))
            if q is not None and (q.pair_id, q.text) not in seen:
                seen.add((q.pair_id, q.text))
                made.append(q)
        out.extend(made)
    return out
