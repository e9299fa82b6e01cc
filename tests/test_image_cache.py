"""Each image is processed and encoded once while the weights stand, with unchanged outputs."""

from __future__ import annotations

import gc

import pytest
import torch
from PIL import Image

from visionzero.models.image_cache import IMAGES, ImageCache
from visionzero.rollout.engine import GameEngine, setup_games
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.settings import load_settings

from .helpers import simple_pairs


def _image(seed: int, size: int = 56) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8).numpy()
    return Image.fromarray(pixels)


class CountingProcessor:
    """Delegates to a real image processor and counts the images it is given."""

    def __init__(self, inner):
        self.inner, self.seen = inner, 0

    def __call__(self, images, **kwargs):
        self.seen += len(images)
        return self.inner(images=images, **kwargs)


def test_pixels_match_the_processor_and_each_image_is_processed_once(tiny_model):
    cache, proc = ImageCache(), CountingProcessor(tiny_model.processor.image_processor)
    a, b = _image(0), _image(1, 84)  # two sizes: rows per image differ
    batch = [a, b, a, a]
    got = cache.pixels(proc, batch)
    want = tiny_model.processor.image_processor(images=batch, return_tensors="pt")
    assert torch.equal(got["pixel_values"], want["pixel_values"])
    assert torch.equal(got["image_grid_thw"], want["image_grid_thw"])
    assert proc.seen == 2  # a and b, once each
    again = cache.pixels(proc, [b, a])
    assert proc.seen == 2 and again["image_grid_thw"].tolist() == want["image_grid_thw"][[1, 0]].tolist()


def _fake_processor(images, **kwargs):  # 4 rows of 3 floats (48 bytes) per image
    return {"pixel_values": torch.zeros(4 * len(images), 3), "image_grid_thw": torch.tensor([[1, 2, 2]] * len(images))}


def test_entries_go_with_their_image():
    cache = ImageCache()
    img = _image(2)
    cache.pixels(_fake_processor, [img])
    assert len(cache) == 1
    del img
    gc.collect()
    assert len(cache) == 0


def test_the_least_recently_used_images_go_beyond_the_byte_bound():
    proc = CountingProcessor(_fake_processor)
    cache = ImageCache(max_bytes=150)  # 72 bytes an image (rows 48, grid 24): two fit, three do not
    a, b, c = _image(6), _image(7), _image(8)
    cache.pixels(proc, [a, b])
    cache.pixels(proc, [a])  # a is now the most recent
    cache.pixels(proc, [c])  # b goes
    assert proc.seen == 3
    cache.pixels(proc, [a, c])
    assert proc.seen == 3
    cache.pixels(proc, [b])
    assert proc.seen == 4


def test_the_processor_path_gives_the_same_tokens_and_pixels(tiny_model):
    """The project's processor routes its image step through the cache: same batch as the stock step."""
    proc = tiny_model.processor
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "image", "image": "x"}, {"type": "text", "text": "hi"}]}],
        tokenize=False, add_generation_prompt=True,
    )  # fmt: skip
    img = _image(3)
    cached = proc(text=[text, text], images=[img, img], padding=True, return_tensors="pt")
    stock = proc.image_processor(images=[img, img], return_tensors="pt")
    assert torch.equal(cached["pixel_values"], stock["pixel_values"])
    n_tokens = int(stock["image_grid_thw"][0].prod()) // proc.image_processor.merge_size**2
    assert (cached["input_ids"] == proc.image_token_id).sum(1).tolist() == [n_tokens, n_tokens]


def test_encoded_images_give_the_same_logits_and_recompute_after_a_tower_update(tiny_settings):
    from visionzero.models import load_model

    loaded = load_model(tiny_settings.model, tiny_settings.runtime)  # its own copy: this test trains it
    model, proc, cache = loaded.model, loaded.processor, ImageCache()
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "image", "image": "x"}, {"type": "text", "text": "what?"}]}],
        tokenize=False, add_generation_prompt=True,
    )  # fmt: skip
    same = _image(4)
    images = [same, _image(5), same]
    batch = dict(proc(text=[text] * 3, images=images, padding=True, return_tensors="pt"))

    def logits(use_cache: bool) -> torch.Tensor:
        inputs = dict(batch)
        if use_cache:
            encoded = cache.encoder_outputs(model, images, inputs.pop("pixel_values"), inputs["image_grid_thw"])
            assert encoded is not None
            inputs["mm_encoder_outputs"] = encoded
        with torch.no_grad():
            return model(**inputs).logits

    assert torch.allclose(logits(True), logits(False), atol=1e-6)
    assert (cache.misses, cache.hits) == (2, 1)  # the repeated image is encoded once
    logits(True)
    assert (cache.misses, cache.hits) == (2, 4)  # weights unchanged: nothing recomputed

    text_only = torch.optim.SGD(model.lm_head.parameters(), lr=0.1)  # a step that leaves the tower alone
    model(**batch).logits.sum().backward()
    text_only.step()
    logits(True)
    assert cache.misses == 2

    tower = torch.optim.SGD(model.model.visual.parameters(), lr=0.1)
    tower.step()  # the gradient from the backward above: the tower's weights move
    fresh = logits(False)
    assert cache.misses == 2
    assert torch.allclose(logits(True), fresh, atol=1e-6) and cache.misses == 4


@pytest.mark.slow
def test_a_rollout_encodes_each_image_once(tiny_model, tmp_path):
    """Production path: the engine's batched turns through HFPolicy reuse each image's encoding."""
    s = load_settings(None, ["game.clue.max_new_tokens=6", "game.decision.max_new_tokens=6"])
    games = setup_games(simple_pairs(tmp_path / "pairs", 3), s.game, seed=0)
    distinct = {g.image_for(seat) for g in games for seat in range(1, s.game.n_players + 1)} | {g.original for g in games}
    before = (IMAGES.misses, IMAGES.hits)
    GameEngine(HFPolicy(tiny_model), s.game).play(games, seed=0)
    misses, hits = IMAGES.misses - before[0], IMAGES.hits - before[1]
    assert misses == len(distinct)
    turns = s.game.rounds * s.game.n_players
    assert misses + hits == len(games) * (turns + 1)  # every clue prompt and each game's vote prompt
