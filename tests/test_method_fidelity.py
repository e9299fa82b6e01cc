"""Method fidelity (METHOD.md sections 4-5): each test failed on the code before its fix.

- RAE baselines move once per GAME, in the batch's game order, through `score_games`;
- behaviour log-probs for multi-step updates are taken as generation ran (dropout off), and
  the ones generation records equal them;
- sampling uses exactly the settings in params: nothing inherited from the checkpoint's
  generation_config.json, and top_k 0 really means "off".
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from visionzero.game import clue_turn_order, new_game, record_clue, record_votes
from visionzero.rl.advantages import RaeState
from visionzero.settings.schema import GameSettings, RewardSettings
from visionzero.train.samples import score_games, training_samples


def _game_all_votes_on_spy(seed: int):
    settings = GameSettings(n_players=4, rounds=2, group_size=8)
    game = new_game("p", "clevr", "a.png", "b.png", settings, seed, image_size=(8, 8))
    for round_, seat in clue_turn_order(settings):
        record_clue(game, round_, seat, "I see a red cube. \\boxed{There is a red cube.}")
    record_votes(game, [f"Player {game.spy_seat} said something odd. \\boxed{{{game.spy_seat}}}"] * 8)
    return game


def test_rae_baseline_moves_once_per_game_in_game_order():
    games = [_game_all_votes_on_spy(3), _game_all_votes_on_spy(3)]  # two identical games
    settings = RewardSettings(rae_alpha=0.95, rae_order="update_then_subtract")
    scored = score_games(games, settings, RaeState())
    spy = games[0].spy_seat
    # r_spy = -0.1 * (8 - 0) = -0.8; b <- 0.95 b + 0.05 r per game, subtracted after its update
    assert scored.clue_advantages[0][spy - 1] == pytest.approx(-0.760)
    assert scored.clue_advantages[1][spy - 1] == pytest.approx(-0.722)
    assert scored.rae.b_spy == pytest.approx(-0.078) and scored.rae.updates == 2
    # every clue turn a seat spoke carries that seat's advantage (what the clue update trains)
    for game in games:
        for turn in game.turns:
            turn.prompt_ids, turn.completion_ids = [1], [2]
    samples = training_samples(games, scored, "clue")
    speakers = [t.seat for g in games for t in g.clue_turns()]
    expected = [scored.clue_advantages[k // 8][seat - 1] for k, seat in enumerate(speakers)]
    assert [s.advantage for s in samples] == pytest.approx(expected)


@pytest.mark.slow
def test_behaviour_logprobs_are_taken_with_dropout_off(tiny_settings):
    from visionzero.models import load_model
    from visionzero.rollout.hf_backend import HFPolicy
    from visionzero.rollout.types import Sampling
    from visionzero.settings import load_settings
    from visionzero.train.samples import TrainSample
    from visionzero.train.update import PolicyTrainer

    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", "runtime.device=cpu",
                             "train.lora.enabled=true", "train.lora.dropout=0.5", "train.steps_per_iteration=2"])
    loaded = load_model(s.model, s.runtime)
    image = Image.new("RGB", (112, 112), (200, 30, 30))

    class Chat:
        messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Describe."}]}]

    out = HFPolicy(loaded).generate([Chat()], Sampling(10, 1.0, n=4), seed=0)[0]
    samples = [TrainSample(c.prompt_token_ids, c.token_ids, [image], 1.0, "decision") for c in out]
    trainer = PolicyTrainer(loaded, s.train)
    with torch.no_grad():  # LoRA B starts at 0: give the adapters weight so dropout matters
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    trainer.model.train()  # where the update leaves it
    first = trainer._with_behaviour_logprobs(samples)
    second = trainer._with_behaviour_logprobs(samples)
    assert trainer.model.training  # the mode is restored
    trainer.model.eval()
    as_generated = trainer._with_behaviour_logprobs(samples)
    for a, b, c in zip(first, second, as_generated):
        assert a.old_logprobs == pytest.approx(b.old_logprobs, abs=1e-6)
        assert a.old_logprobs == pytest.approx(c.old_logprobs, abs=1e-6)


@pytest.mark.slow
def test_sampled_completions_carry_the_behaviour_logprobs_the_update_computes(tiny_settings, tmp_path):
    """Production path: the engine's turns through HFPolicy record each sampled token's
    log-prob; they equal the update's own recomputation (so it skips that pass), the votes
    generated on a shared prompt cache included. Greedy turns record none."""
    from dataclasses import replace

    from visionzero.models import load_model
    from visionzero.rollout.engine import GameEngine, setup_games
    from visionzero.rollout.hf_backend import HFPolicy
    from visionzero.rollout.types import Sampling
    from visionzero.settings import load_settings
    from visionzero.train.update import PolicyTrainer

    from .helpers import simple_pairs

    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", "runtime.device=cpu",
                             "game.clue.max_new_tokens=8", "game.decision.max_new_tokens=8", "game.group_size=2"])  # fmt: skip
    loaded = load_model(s.model, s.runtime)
    games = setup_games(simple_pairs(tmp_path, 2), s.game, seed=0)
    GameEngine(HFPolicy(loaded), s.game).play(games, seed=1)
    scored = score_games(games, s.rewards, RaeState())
    trainer = PolicyTrainer(loaded, s.train)
    for stage in ("clue", "decision"):
        samples = training_samples(games, scored, stage)
        assert samples and all(len(x.old_logprobs or []) == len(x.completion_ids) for x in samples)
        again = trainer._with_behaviour_logprobs([replace(x, old_logprobs=None) for x in samples])
        for x, y in zip(samples, again):
            assert x.old_logprobs == pytest.approx(y.old_logprobs, abs=1e-4)
    [[greedy]] = HFPolicy(loaded).generate([_Chat(Image.new("RGB", (112, 112)))], Sampling(6, 0.0))
    assert greedy.logprobs is None


class _Chat:
    def __init__(self, image):
        self.messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Which colour?"}]}]


@pytest.mark.slow
def test_sampling_ignores_the_checkpoints_generation_config(tiny_settings, tiny_model, tmp_path):
    from visionzero.models import load_model
    from visionzero.rollout.hf_backend import HFPolicy
    from visionzero.rollout.types import Sampling

    tampered = tmp_path / "tampered"
    tiny_model.model.save_pretrained(tampered)
    tiny_model.processor.save_pretrained(tampered)
    cfg = json.loads((tampered / "generation_config.json").read_text())
    cfg.update(repetition_penalty=5.0, top_k=2, top_p=0.01, temperature=0.1, no_repeat_ngram_size=2, min_new_tokens=6)
    (tampered / "generation_config.json").write_text(json.dumps(cfg))
    other = load_model(tiny_settings.model, tiny_settings.runtime, spec=str(tampered))
    assert other.model.generation_config.repetition_penalty == 5.0
    chats = [_Chat(Image.new("RGB", (112, 112), (30, 200, 30)))] * 2
    for sampling in (Sampling(12, 1.0, n=3), Sampling(12, 0.0)):
        clean = HFPolicy(tiny_model).generate(chats, sampling, seed=5)
        got = HFPolicy(other).generate(chats, sampling, seed=5)
        assert [[c.token_ids for c in r] for r in got] == [[c.token_ids for c in r] for r in clean]
    assert other.model.generation_config.repetition_penalty == 5.0  # kept for saving


@pytest.mark.slow
def test_top_k_zero_samples_from_the_whole_vocabulary(tiny_model):
    """The random tiny model's next-token distribution is nearly flat: 256 draws with no
    top-k cut land beyond the 50 likeliest tokens (transformers' default top_k) many times."""
    from visionzero.rollout.hf_backend import HFPolicy
    from visionzero.rollout.types import Sampling

    policy = HFPolicy(tiny_model)
    chat = _Chat(Image.new("RGB", (112, 112), (30, 30, 200)))
    (draws,) = policy.generate([chat], Sampling(1, 1.0, top_k=0, n=256), seed=1)
    batch = policy.encode([chat])
    with torch.no_grad():
        logits = tiny_model.model(**batch).logits[0, -1]
    rank = {int(t): r for r, t in enumerate(torch.argsort(logits, descending=True))}
    beyond = sum(rank[c.token_ids[0]] >= 50 for c in draws)
    assert beyond > 64
    (capped,) = policy.generate([chat], Sampling(1, 1.0, top_k=5, n=64), seed=1)
    assert all(rank[c.token_ids[0]] < 5 for c in capped)
