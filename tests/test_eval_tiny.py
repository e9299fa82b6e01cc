"""The whole evaluation with the real tiny VLM on generated pairs: API and CLI."""

from __future__ import annotations

import json

import pytest

from visionzero.cli.main import main
from visionzero.eval.heldout import build_eval_set, heldout_pairs
from visionzero.eval.runner import count_steps, evaluate_policies
from visionzero.eval.vqa_questions import CHART_TYPES, CLEVR_TYPES
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.settings import load_settings

pytestmark = pytest.mark.slow

SMALL = [
    "game.rounds=1", "game.clue.max_new_tokens=8", "game.decision.max_new_tokens=6", "game.group_size=4",
    "eval.games=2", "eval.vqa_per_type=1", "eval.max_new_tokens=8",
]  # fmt: skip


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    from visionzero.pairs.generate import generate_pairs

    root = tmp_path_factory.mktemp("eval-pairs")
    s = load_settings(None, ["pairs.image_size=112", "pairs.clevr.min_objects=3", "pairs.clevr.max_objects=5"])
    generate_pairs(s.pairs, "clevr", 4, root / "clevr", n_eval=3, workers=1)
    generate_pairs(s.pairs, "chart", 2, root / "chart", n_eval=2, workers=1)
    return [str(root / "clevr"), str(root / "chart")]


def test_tiny_model_against_itself(tiny_model, datasets):
    s = load_settings(None, SMALL)
    eval_set = build_eval_set(heldout_pairs(datasets), s.eval)
    assert [p.domain for p in eval_set.pairs] == ["clevr", "clevr", "chart", "chart"]
    assert {q.qtype for q in eval_set.questions} == set(CLEVR_TYPES + CHART_TYPES)
    steps = []
    runs = [
        evaluate_policies(HFPolicy(tiny_model), HFPolicy(tiny_model), eval_set, s, progress=steps.append)
        for _ in range(2)
    ]
    m = runs[0].metrics
    assert runs[1].metrics == m  # fixed set, fixed seeds: the same numbers
    assert len(steps) == 2 * count_steps(eval_set, s)
    assert m[s.registry.metric] == m["win_rate"]
    assert m["match/ci_low"] <= m["win_rate"] <= m["match/ci_high"]
    assert m["match/games"] == 4 and m["game/games"] == 4 and m["vqa/questions"] == len(eval_set.questions)
    assert m["game/votes"] == 4 * 4
    assert m["game/na_rate"] + m["game/invalid_rate"] + m["game/vote_accuracy"] <= 1.0
    assert 0 < m["game/clue_tokens"] <= 8 and 0 < m["game/vote_tokens"] <= 6
    assert all(0.0 <= v <= 1.0 for k, v in m.items() if k.endswith(("rate", "accuracy", "identified")))


def test_cli_writes_results_curve_and_records(tiny_settings, datasets, tmp_path, capsys):
    out, curve, records = tmp_path / "eval.json", tmp_path / "curve.jsonl", tmp_path / "records"
    overrides = [f"model.cache_dir={tiny_settings.model.cache_dir}", "runtime.device=cpu", *SMALL]
    args = ["eval", "--params", "/dev/null", "--pairs", *datasets, "--out", str(out),
            "--curve", str(curve), "--iteration", "3", "--records", str(records)]  # fmt: skip
    for o in overrides:
        args += ["--set", o]
    assert main(args) == 0
    metrics = json.loads(out.read_text())
    assert {"win_rate", "match/ci_low", "match/ci_high", "game/spy_identified", "vqa/accuracy"} <= set(metrics)
    assert json.loads(curve.read_text())["iteration"] == 3
    assert len((records / "match.jsonl").read_text().splitlines()) == 4
    assert (records / "match.html").exists() and (records / "vqa.jsonl").exists()
    printed = capsys.readouterr().out
    assert "win rate" in printed and "time" in printed


def test_cli_self_play_only_plays_no_match(tiny_settings, datasets, tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = ["eval", "--params", "/dev/null", "--pairs", *datasets, "--out", str(out), "--no-match",
            "--records", str(tmp_path / "records")]  # fmt: skip
    for o in [f"model.cache_dir={tiny_settings.model.cache_dir}", "runtime.device=cpu", *SMALL]:
        args += ["--set", o]
    assert main(args) == 0
    metrics = json.loads(out.read_text())
    assert "win_rate" not in metrics and "game/best_constant_seat_accuracy" in metrics
    assert not (tmp_path / "records" / "match.jsonl").exists()
    printed = capsys.readouterr()
    assert "self-play only" in printed.out and "win rate" not in printed.out and "warning" not in printed.err


def test_cli_bad_pairs_folder_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--params", "/dev/null", "--pairs", str(tmp_path / "missing")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest not found" in err[0]


TRAIN = ["runtime.device=cpu", "train.games_per_iteration=2", "train.lr=1e-2", "train.phase.mode=decision_only", "train.micro_batch_size=4"]


def _trained(settings, run_dir, tmp_path):
    """An IterativeSPO run one update away from the base (scripted votes give the update a signal)."""
    from visionzero.train.loop import IterativeSPO

    from .helpers import ScriptedVoter, simple_pairs

    spo = IterativeSPO(settings, run_dir, simple_pairs(tmp_path / "train-pairs", 2))
    live = spo.policy
    spo.policy = ScriptedVoter(live, settings.game.n_players, HFPolicy(spo.loaded))
    spo.train(1)
    spo.policy = live
    return spo


def _tokens(policy, eval_set, s):
    from visionzero.game import clue_request
    from visionzero.rollout.engine import setup_games
    from visionzero.rollout.types import Sampling

    requests = [clue_request(g, 1, 1) for g in setup_games(eval_set.pairs, s.game, seed=0)]
    return [c.token_ids for cs in policy.generate(requests, Sampling(8, 1.0), seed=5) for c in cs]


def test_evaluation_during_training_reuses_the_models_in_memory(tiny_settings, datasets, tmp_path):
    """The live policy and the KL reference stand in for the checkpoint and the base: same results, nothing loaded."""
    from visionzero.eval.runner import evaluate

    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", *SMALL, *TRAIN, "train.kl_beta=0.04"])
    spo = _trained(s, tmp_path / "run", tmp_path)
    live, base = spo.eval_players()
    assert live is spo.policy and base is not None
    checkpoint = str(spo.checkpoint_now() / "model")
    from_memory = evaluate(s, datasets, model=checkpoint, in_memory=(live, base))
    from_disk = evaluate(s, datasets, model=checkpoint)
    assert from_memory.metrics == from_disk.metrics
    assert from_memory.opponent == from_disk.opponent and from_memory.model == checkpoint
    eval_set = from_disk.eval_set
    assert _tokens(live, eval_set, s) != _tokens(base, eval_set, s)  # the opponent really is the old model


def test_lora_base_is_the_network_with_adapters_off(tiny_settings, tiny_model, datasets, tmp_path):
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", *SMALL, *TRAIN,
                             "train.lora.enabled=true", "train.lora.r=4"])  # fmt: skip
    import torch

    spo = _trained(s, tmp_path / "run", tmp_path)
    with torch.no_grad():  # one small step barely moves B (zero at init): make the adapters matter
        for name, p in spo.trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    live, base = spo.eval_players()
    eval_set = build_eval_set(heldout_pairs(datasets), s.eval)
    on = _tokens(live, eval_set, s)
    off, fresh = _tokens(base, eval_set, s), _tokens(HFPolicy(tiny_model), eval_set, s)
    assert off == fresh and on != off
    assert _tokens(live, eval_set, s) == on  # the adapters are on again afterwards


def test_without_a_reference_the_base_is_loaded(tiny_settings, tmp_path):
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", *SMALL, *TRAIN, "train.kl_beta=0"])
    spo = _trained(s, tmp_path / "run", tmp_path)
    assert spo.eval_players() == (spo.policy, None)
