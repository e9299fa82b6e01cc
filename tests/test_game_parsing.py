"""Parsing of clues, reasoning and votes (METHOD.md section 3): examples and a fuzz test."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visionzero.game.parsing import (
    MAX_CLUE_CHARS,
    NO_CLUE,
    VOTE_KINDS,
    parse_clue,
    parse_reasoning,
    parse_vote,
)


# ---------------------------------------------------------------- clues
@pytest.mark.parametrize(
    ("text", "clue"),
    [
        ("I see a cube. \\boxed{A red cube is left.}", "A red cube is left."),
        ("\\boxed{set {a, {b}} here} tail", "set {a, {b}} here"),  # nested braces
        ("\\boxed{first} then \\boxed{second}", "first"),  # several boxes: the first
        ("\\\\boxed{double backslash}", "double backslash"),
        ("\\boxed {spaced}", "spaced"),
        ("\\boxed no brace, later \\boxed{real}", "real"),
        ("\\boxed{a {b} c", "a {b"),  # unbalanced: up to the first }
        ("no box <answer>from tags</answer>", "from tags"),
        ("\\boxed{ two\n lines\t here }", "two lines here"),  # one line for the transcript
    ],
)
def test_clue_examples(text: str, clue: str) -> None:
    parsed = parse_clue(text)
    assert parsed.valid
    assert parsed.text == clue


@pytest.mark.parametrize(
    "text", ["", "no answer at all", "\\boxed{   }", "\\boxed{never closed", "<answer>open", "}{"]
)
def test_missing_clue_gives_placeholder(text: str) -> None:
    parsed = parse_clue(text)
    assert not parsed.valid
    assert parsed.text == NO_CLUE


def test_long_clue_is_capped() -> None:
    parsed = parse_clue("\\boxed{" + "word " * 1000 + "}")
    assert parsed.valid
    assert len(parsed.text) == MAX_CLUE_CHARS
    assert parsed.text.endswith("...")


def test_reasoning_is_text_before_box_or_think_block() -> None:
    assert parse_clue("Step 1: look.\n\\boxed{x}").reasoning == "Step 1: look."
    assert parse_clue("Hmm \\\\boxed{x}").reasoning == "Hmm"
    assert parse_clue("<think>private</think> say \\boxed{x}").reasoning == "private"
    assert parse_reasoning("<think>unclosed \\boxed{x}") == "unclosed"
    assert parse_reasoning("all of it, no answer") == "all of it, no answer"
    assert parse_reasoning("before <answer>x</answer>") == "before"


# ---------------------------------------------------------------- votes
@pytest.mark.parametrize(
    ("text", "kind", "seat"),
    [
        ("Player 3 was vague. \\boxed{3}", "seat", 3),
        ("\\boxed{Player 2}", "seat", 2),
        ("\\boxed{2 or 4}", "seat", 2),
        ("\\boxed{N/A}", "na", None),
        ("\\boxed{ na }", "na", None),
        ("\\boxed{\\text{n/a}}", "na", None),
        ("\\boxed{7}", "invalid", None),  # outside 1..4
        ("\\boxed{0}", "invalid", None),
        ("\\boxed{12}", "invalid", None),  # no standalone digit
        ("\\boxed{P3}", "invalid", None),
        ("\\boxed{}", "invalid", None),
        ("I think it is 2.", "invalid", None),  # no box: a digit outside it does not count
        ("<answer>4</answer>", "seat", 4),
    ],
)
def test_vote_examples(text: str, kind: str, seat: int | None) -> None:
    vote = parse_vote(text, n_players=4)
    assert (vote.kind, vote.seat) == (kind, seat)


def test_vote_format_flag() -> None:
    assert parse_vote("Player 1 named a colour nobody else saw. \\boxed{1}", 4).format_ok
    assert parse_vote("Long enough reasoning here. \\boxed{N/A}", 4).format_ok
    assert not parse_vote("short \\boxed{1}", 4).format_ok  # reasoning <= 10 characters
    assert not parse_vote("Long enough reasoning here. \\boxed{ }", 4).format_ok
    assert not parse_vote("Long enough reasoning but no box", 4).format_ok
    # format is about form only: an out-of-range seat is invalid but well formatted
    vote = parse_vote("Long enough reasoning here. \\boxed{8}", 4)
    assert vote.kind == "invalid" and vote.format_ok


@pytest.mark.parametrize(
    "text",
    [
        "\\boxed{" + "{" * 200_000,
        "\\boxed" * 100_000,
        "\\boxed{" * 100_000 + "}",
        "<answer>" * 100_000,
        "<think>" * 100_000 + "\\boxed{1}",
        "1" * 500_000,
    ],
)
def test_huge_hostile_inputs(text: str) -> None:
    clue = parse_clue(text)
    vote = parse_vote(text, 4)
    assert isinstance(clue.text, str) and len(clue.text) <= MAX_CLUE_CHARS
    assert vote.kind in VOTE_KINDS


# ---------------------------------------------------------------- fuzz
# Markup fragments ride on private-use characters so a plain (fast) text strategy can mix
# them freely with braces, backslashes, digits and any unicode; `_expand` swaps them in.
_FRAGMENTS = ["\\boxed{", "\\boxed", "\\\\boxed{", "\\text{", "<answer>", "</answer>",
              "<think>", "</think>", "N/A", "na", "12", "Player "]  # fmt: skip
_MARKS = {chr(0xE000 + i): f for i, f in enumerate(_FRAGMENTS)}
_ALPHABET = "".join(_MARKS) + "{}\\ \n\tab.x/0123456789N\u00e9\U0001F600"


def _expand(text: str) -> str:
    return "".join(_MARKS.get(c, c) for c in text)


_TEXTS = st.one_of(st.text(), st.text(alphabet=_ALPHABET).map(_expand))


@settings(max_examples=10_000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(text=_TEXTS)
def test_every_parser_is_total(text: str) -> None:
    clue = parse_clue(text)
    assert clue.valid == (clue.text != NO_CLUE)
    assert 0 < len(clue.text) <= MAX_CLUE_CHARS and "\n" not in clue.text
    if clue.valid and not clue.text.endswith("..."):
        # the shown clue is the model's own words, only re-spaced
        assert clue.text in " ".join(text.split())
    assert isinstance(clue.reasoning, str) and clue.reasoning == parse_reasoning(text)

    for n in range(3, 10):  # every table size the settings allow
        vote = parse_vote(text, n)
        assert vote.kind in VOTE_KINDS
        assert isinstance(vote.format_ok, bool)
        if vote.kind == "seat":
            assert vote.seat is not None and 1 <= vote.seat <= n
        else:
            assert vote.seat is None
