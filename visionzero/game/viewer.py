"""A self-contained HTML page showing played games: images, roles, clues, votes, outcome.

Images are embedded as base64 data URIs so the page can be attached to a run and opened
anywhere; blank spy images are drawn as grey boxes. Every piece of model text is escaped.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from collections.abc import Iterable
from pathlib import Path

from visionzero.game.records import OBSERVER, Game, Turn
from visionzero.game.rules import parse_blank_ref

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
section{border:1px solid #ccc;border-radius:6px;padding:1em;margin-bottom:1.5em}
.imgs{display:flex;gap:1em;flex-wrap:wrap}
figure{margin:0}img,.blank{width:224px;height:224px;object-fit:contain;border:1px solid #999}
.blank{background:#888;display:flex;align-items:center;justify-content:center;color:#eee}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .5em;
text-align:left;vertical-align:top}.spy{background:#fde2e2}.bad{color:#b00}
.found{color:#070;font-weight:bold}.escaped{color:#b00;font-weight:bold}
details pre{white-space:pre-wrap;max-width:60em}
"""


_SPY_ROW = ' class="spy"'


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _data_uri(path: str) -> str | None:
    """The file as a data URI, or None if it cannot be read."""
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class _Images:
    """Data URIs cached per path: one pair is often played by several games."""

    def __init__(self) -> None:
        self._cache: dict[str, str | None] = {}

    def figure(self, ref: str, caption: str) -> str:
        try:
            size = parse_blank_ref(ref)
        except ValueError:  # a malformed blank reference: still show a grey box
            size = (0, 0)
        if size is not None:
            box = f'<div class="blank">blank {size[0]}x{size[1]}</div>'
        else:
            if ref not in self._cache:
                self._cache[ref] = _data_uri(ref)
            uri = self._cache[ref]
            box = f'<img src="{uri}" alt="{_e(ref)}">' if uri else f'<div class="blank">missing: {_e(ref)}</div>'
        return f"<figure>{box}<figcaption>{_e(caption)}</figcaption></figure>"


def _who(game: Game, seat: int) -> str:
    return "Observer" if seat == OBSERVER else f"Player {seat}" + (" (spy)" if seat == game.spy_seat else "")


def _details(label: str, text: str) -> str:
    return f"<details><summary>{_e(label)}</summary><pre>{_e(text)}</pre></details>"


def _clue_row(game: Game, t: Turn) -> str:
    cls = _SPY_ROW if t.seat == game.spy_seat else ""
    clue = t.clue
    text = _e(clue.text) if clue and clue.valid else f'<span class="bad">{_e(clue.text if clue else "")}</span>'
    reasoning = _details("reasoning", clue.reasoning) if clue else ""
    return f"<tr{cls}><td>{t.round}</td><td>{_e(_who(game, t.seat))}</td><td>{text}</td><td>{reasoning}</td></tr>"


def _vote_row(game: Game, t: Turn) -> str:
    v = t.vote
    if v is None:
        shown = "-"
    elif v.kind == "seat":
        shown = f"Player {v.seat}" + (" &#10003;" if v.seat == game.spy_seat else "")
    else:
        shown = f'<span class="bad">{"N/A" if v.kind == "na" else "invalid"}</span>'
    fmt = "ok" if v and v.format_ok else "bad"
    return (
        f"<tr><td>{_e(_who(game, t.seat))}</td><td>{t.sample}</td><td>{shown}</td><td>{fmt}</td>"
        f"<td>{_details('completion', t.text)}</td></tr>"
    )


def _game_section(game: Game, images: _Images) -> str:
    outcome = (
        '<span class="found">spy identified</span>'
        if game.spy_identified
        else '<span class="escaped">spy not identified</span>'
    )
    figs = [images.figure(game.original, "original (civilians)"), images.figure(game.edited, "edited")]
    if game.spy_image not in (game.original, game.edited):
        figs.append(images.figure(game.spy_image, "shown to the spy"))
    seats = "".join(
        f"<tr{_SPY_ROW if s == game.spy_seat else ''}><td>{s}</td><td>{game.role(s)}</td>"
        f"<td>{_e(game.image_for(s))}</td></tr>"
        for s in game.seats
    )
    counts = ", ".join(f"P{s}: {c}" for s, c in game.vote_counts.items())
    clues = "".join(_clue_row(game, t) for t in game.clue_turns())
    votes = "".join(_vote_row(game, t) for t in game.decision_turns)
    return f"""<section>
<h2>Game {_e(game.game_id)}</h2>
<p>pair {_e(game.pair_id)} &middot; {_e(game.domain)} &middot; spy: Player {game.spy_seat} &middot; {outcome}</p>
<div class="imgs">{''.join(figs)}</div>
<table><tr><th>seat</th><th>role</th><th>image</th></tr>{seats}</table>
<h3>Clues</h3>
<table><tr><th>round</th><th>player</th><th>clue</th><th></th></tr>
{clues}</table>
<h3>Votes</h3>
<p>valid votes {counts}; N/A {game.na_count}; invalid {game.invalid_count}</p>
<table><tr><th>voter</th><th>sample</th><th>vote</th><th>format</th><th></th></tr>
{votes}</table>
</section>"""


def render_html(games: Iterable[Game], title: str = "Vision-Zero games") -> str:
    """The whole page as a string."""
    games = list(games)
    images = _Images()
    found = sum(g.spy_identified for g in games)
    votes = sum(len(g.votes) for g in games)
    na = sum(g.na_count for g in games)
    summary = f"games: {len(games)}; spy identified in {found}; N/A votes {na} of {votes}"
    body = "\n".join(_game_section(g, images) for g in games)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head>\n<body><h1>{_e(title)}</h1><p>{summary}</p>\n{body}\n</body></html>\n"
    )


def write_viewer(path: str | Path, games: Iterable[Game], title: str = "Vision-Zero games") -> Path:
    """Write the page to `path` (UTF-8, any odd characters escaped) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = render_html(games, title)
    path.write_text(page, encoding="utf-8", errors="xmlcharrefreplace")
    return path
