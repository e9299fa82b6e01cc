"""The "Who is the spy?" game: rules, prompts, parsing, records and an HTML viewer.

Pure Python (no torch): the rollout engine turns `ChatRequest`s into completions and
hands them back to `record_clue` / `record_votes`.
"""

from visionzero.game.parsing import (
    NO_CLUE,
    ParsedClue,
    ParsedVote,
    parse_clue,
    parse_reasoning,
    parse_vote,
)
from visionzero.game.records import OBSERVER, Game, Turn, read_records, write_records
from visionzero.game.rules import (
    ChatRequest,
    Completion,
    blank_ref,
    clue_request,
    clue_turn_order,
    decision_requests,
    new_game,
    next_clue_turn,
    parse_blank_ref,
    record_clue,
    record_vote,
    record_votes,
    voters,
)

__all__ = [
    "NO_CLUE",
    "OBSERVER",
    "ChatRequest",
    "Completion",
    "Game",
    "ParsedClue",
    "ParsedVote",
    "Turn",
    "blank_ref",
    "clue_request",
    "clue_turn_order",
    "decision_requests",
    "new_game",
    "next_clue_turn",
    "parse_blank_ref",
    "parse_clue",
    "parse_reasoning",
    "parse_vote",
    "read_records",
    "record_clue",
    "record_vote",
    "record_votes",
    "voters",
    "write_records",
]
