"""The HTML game viewer: embedded images, escaped model text, outcome."""

from __future__ import annotations

import base64
from pathlib import Path

from PIL import Image

from visionzero.game import clue_turn_order, new_game, record_clue, record_votes
from visionzero.game.viewer import write_viewer
from visionzero.settings.schema import GameSettings

EVIL = "<script>alert('x')</script> & \ud800"


def _png(path: Path, colour: str) -> str:
    Image.new("RGB", (16, 16), colour).save(path)
    return str(path)


def _play(game, vote_for_spy: bool) -> None:
    for round_, seat in clue_turn_order(game.settings):
        record_clue(game, round_, seat, f"{EVIL} \\boxed{{{EVIL} clue {round_}.{seat}}}")
    target = game.spy_seat if vote_for_spy else game.civilians[0]
    record_votes(game, [f"Long reasoning {EVIL} \\boxed{{{target}}}"] * game.settings.group_size)


def test_viewer_embeds_images_and_escapes_text(tmp_path) -> None:
    orig, edit = _png(tmp_path / "o.png", "red"), _png(tmp_path / "e.png", "blue")
    found = new_game("p0", "clevr", orig, edit, GameSettings(group_size=3), seed=0)
    missed = new_game("p1", "photo", orig, edit, GameSettings(spy_image="blank", group_size=2), seed=1)
    _play(found, vote_for_spy=True)
    _play(missed, vote_for_spy=False)
    page = write_viewer(tmp_path / "view" / "games.html", [found, missed]).read_text(encoding="utf-8")

    for path in (orig, edit):
        uri = "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
        assert uri in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp;" in page
    assert "clue 2.4" in page  # every clue is shown
    assert 'class="blank">blank 16x16' in page  # the blank spy image of the second game
    assert "spy identified" in page and "spy not identified" in page
    assert "spy identified in 1" in page


def test_viewer_survives_missing_images(tmp_path) -> None:
    game = new_game("p0", "chart", str(tmp_path / "gone.png"), "also/gone.png", GameSettings(), seed=0)
    page = write_viewer(tmp_path / "v.html", [game]).read_text(encoding="utf-8")
    assert "missing:" in page and "gone.png" in page
