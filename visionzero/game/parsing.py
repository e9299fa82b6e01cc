"""Parse what players write: clues, private reasoning and votes (METHOD.md section 3).

Models emit arbitrary text, so every function here is total: it never raises and always
returns a typed outcome that the reward code can count. All scans are linear in the input
length (plain `str.find` and one linear regex), so a huge or hostile completion costs no
more than reading it once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

NO_CLUE = "No valid clue provided."
# A clue is one sentence; a runaway box must not crowd every later player's context.
MAX_CLUE_CHARS = 400

VoteKind = Literal["seat", "na", "invalid"]
VOTE_KINDS: tuple[VoteKind, ...] = ("seat", "na", "invalid")

_BOX = "\\boxed"
_NA = frozenset({"N/A", "NA"})
# A digit 1..9 with no letter, digit or underscore on either side (like regex \b[1-9]\b).
_STANDALONE_DIGIT = re.compile(r"(?<!\w)[1-9](?!\w)")
# LaTeX wrappers models like to put around a boxed answer: \boxed{\text{N/A}}.
_WRAPPERS = ("\\text{", "\\textbf{", "\\mathrm{", "\\mathbf{")


@dataclass(frozen=True)
class ParsedClue:
    """A clue turn: `text` is what the other players see, `reasoning` stays private."""

    text: str
    reasoning: str
    valid: bool


@dataclass(frozen=True)
class ParsedVote:
    """A decision: `seat` is set only when `kind == "seat"` (always within 1..n)."""

    kind: VoteKind
    seat: int | None
    format_ok: bool
    answer: str = ""  # the boxed (or <answer>) content the vote was read from


@dataclass(frozen=True)
class _Answer:
    content: str  # text inside the box or the <answer> tags
    start: int  # where the answer markup begins (reasoning ends there)


def _find_boxed(text: str) -> _Answer | None:
    """The first `\\boxed{...}` with its content, braces nested; None when there is none.

    `\\boxed` may be followed by spaces before `{`. If the braces never balance, the content
    runs to the first `}` (what the released code reads); with no `}` at all there is no box.
    """
    i = text.find(_BOX)
    while i != -1:
        j = i + len(_BOX)
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            depth = 0
            for k in range(j, len(text)):
                c = text[k]
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        return _Answer(text[j + 1 : k], i)
            close = text.find("}", j + 1)
            return None if close == -1 else _Answer(text[j + 1 : close], i)
        i = text.find(_BOX, j)
    return None


def _find_answer_tag(text: str) -> _Answer | None:
    """The content of the first closed `<answer>...</answer>` pair, or None."""
    i = text.find("<answer>")
    if i == -1:
        return None
    end = text.find("</answer>", i + 8)
    return None if end == -1 else _Answer(text[i + 8 : end], i)


def _find_answer(text: str) -> _Answer | None:
    return _find_boxed(text) or _find_answer_tag(text)


def _reasoning(text: str, answer: _Answer | None) -> str:
    """A `<think>` block if closed, else the text before the answer (all of it if none)."""
    start = text.find("<think>")
    if start != -1:
        end = text.find("</think>", start + 7)
        if end != -1:
            return text[start + 7 : end].strip()
    before = text if answer is None else text[: answer.start]
    # A doubled backslash (\\boxed) leaves one behind; an unclosed <think> leaves the tag.
    return before.replace("<think>", "").rstrip("\\ \t\r\n").strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _unwrap(content: str) -> str:
    """Strip whitespace and one LaTeX text wrapper: `\\text{N/A}` -> `N/A`."""
    s = content.strip()
    for w in _WRAPPERS:
        if s.startswith(w) and s.endswith("}"):
            return s[len(w) : -1].strip()
    return s


def parse_reasoning(text: str) -> str:
    """A player's private reasoning: its `<think>` block, else the text before its answer."""
    return _reasoning(text, _find_answer(text))


def parse_clue(text: str) -> ParsedClue:
    """Read a clue turn: first `\\boxed{}`, else `<answer></answer>`, else the placeholder.

    The clue is collapsed onto one line (it is shown in a line-per-player transcript) and
    capped at MAX_CLUE_CHARS characters. An empty answer counts as no clue.
    """
    answer = _find_answer(text)
    clue = _one_line(answer.content) if answer else ""
    if len(clue) > MAX_CLUE_CHARS:
        clue = clue[: MAX_CLUE_CHARS - 3].rstrip() + "..."
    reasoning = _reasoning(text, answer)
    if not clue:
        return ParsedClue(NO_CLUE, reasoning, False)
    return ParsedClue(clue, reasoning, True)


def parse_vote(text: str, n_players: int) -> ParsedVote:
    """Read a decision: `N/A`/`NA` abstains; else the first standalone digit 1..9 names a seat.

    A seat outside 1..n_players, or no readable answer at all, is an invalid vote.
    `format_ok` (the released code's format flag): reasoning before the answer longer than
    10 characters and a non-empty answer.
    """
    answer = _find_answer(text)
    content = _unwrap(answer.content) if answer else ""
    format_ok = bool(content) and len(_reasoning(text, answer)) > 10
    shown = content[:MAX_CLUE_CHARS]  # kept for logs and the viewer, bounded
    if content.upper() in _NA:
        return ParsedVote("na", None, format_ok, shown)
    m = _STANDALONE_DIGIT.search(content)
    if m is not None:
        seat = int(m.group())
        if 1 <= seat <= n_players:
            return ParsedVote("seat", seat, format_ok, shown)
    return ParsedVote("invalid", None, format_ok, shown)
