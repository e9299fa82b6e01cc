"""The typed params schema: defaults from METHOD.md, overrides, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from visionzero.settings import Settings, SettingsError, flatten, load_settings, settings_dict
from visionzero.settings.render import render_yaml


def test_defaults_are_the_papers():
    s = Settings()
    assert (s.game.n_players, s.game.rounds, s.game.group_size) == (4, 2, 8)
    assert s.rewards.beta == s.rewards.lambda_ == 0.1
    assert (s.rewards.correct, s.rewards.na, s.rewards.wrong) == (1.0, -0.5, -1.0)
    assert s.train.kl_beta == 0.04 and s.train.lr == 1e-5 and s.train.clip_eps == 0.2
    phase = s.train.phase
    assert (phase.to_clue_acc, phase.to_clue_na, phase.to_decision_err, phase.to_decision_na) == (0.9, 0.1, 0.4, 0.5)
    assert (phase.rho, phase.k_min, phase.start, phase.mode) == (0.95, 5, "decision", "hysteresis")


def test_every_field_has_a_description():
    def walk(model_cls, prefix=""):
        for name, field in model_cls.model_fields.items():
            assert field.description, f"{prefix}{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, Settings.__mro__[1]):
                walk(ann, f"{prefix}{name}.")

    walk(Settings)


def test_params_yaml_lists_every_key_and_validates(repo_root):
    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    assert set(flatten(data)) == set(flatten(settings_dict(Settings())))
    load_settings(repo_root / "params.yaml")


def test_overrides_parse_values_as_yaml(tmp_path):
    s = load_settings(None, ["train.lr=3e-4", "game.rounds=3", "pairs.domains=[clevr, chart]", "rewards.lambda=0.2"])
    assert s.train.lr == 3e-4 and s.game.rounds == 3
    assert s.pairs.domains == ["clevr", "chart"] and s.rewards.lambda_ == 0.2


def test_rendered_yaml_round_trips():
    s = load_settings(None, ["game.rounds=3", "train.phase.mode=alternate"])
    again = Settings.model_validate(yaml.safe_load(render_yaml(s)))
    assert again == s


@pytest.mark.parametrize(
    "override, needle",
    [
        ("game.n_players=2", "game.n_players"),
        ("game.bogus=1", "game.bogus: unknown key"),
        ("nosection.x=1", "nosection: unknown key"),
        ("game.rounds=abc", "game.rounds"),
        ("train.phase.rho=1.5", "train.phase.rho"),
        ("pairs.clevr.min_objects=7", "pairs.clevr"),
        ("game=3", "game"),
        ("game.n_players", "expected section.key=value"),
        ("game.rounds.x=1", "game.rounds"),
    ],
)
def test_bad_overrides_give_one_line_naming_the_key(override, needle):
    with pytest.raises(SettingsError) as info:
        load_settings(None, [override])
    message = str(info.value)
    assert needle in message and "\n" not in message


@pytest.mark.parametrize(
    "text, needle",
    [("game: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "top level"), ("game:\n  rounds: 0\n", "game.rounds")],
)
def test_bad_files_give_one_line(tmp_path, text, needle):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=needle):
        load_settings(path)


def _bomb(levels: int) -> str:
    """Nested anchors: 9 ** levels scalars once expanded, in a few hundred bytes."""
    lines = ['l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text, needle",
    [
        (_bomb(9), "alias bomb"),  # 387M scalars once expanded, from ~330 bytes
        ("a: &a [*a]\n", "recursive"),
        (None, "not a regular file"),  # a directory
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ],
)
def test_hostile_params_files_give_one_line(tmp_path, text, needle):
    path = tmp_path
    if text is not None:
        path = tmp_path / "p.yaml"
        path.write_text(text)
    with pytest.raises(SettingsError, match=needle) as info:  # (the bomb: was 45 s, > 4 GB, a traceback)
        load_settings(path)
    assert "\n" not in str(info.value)


def test_small_aliases_still_load(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("game:\n  clue: &sampling {temperature: 0.7, top_k: 0}\n  decision: *sampling\n")
    s = load_settings(path)
    assert s.game.clue.temperature == s.game.decision.temperature == 0.7


def test_group_size_one_is_refused():
    with pytest.raises(SettingsError, match="game.group_size"):
        load_settings(None, ["game.group_size=1"])


@pytest.mark.parametrize("value", ["0", "-1"])
def test_cli_train_refuses_fewer_than_one_iteration(repo_root, tmp_path, value):
    result = _cli("train", "--pairs", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--iterations", value, cwd=repo_root)
    assert result.returncode == 2 and "--iterations must be at least 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_missing_named_file_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "other.yaml")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "visionzero.cli.main", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_bad_override_exits_2_without_traceback(repo_root):
    result = _cli("params", "show", "--set", "game.n_players=2", cwd=repo_root)
    assert result.returncode == 2
    assert "game.n_players" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_help_and_show(repo_root):
    result = _cli("--help", cwd=repo_root)
    assert result.returncode == 0 and "params" in result.stdout and "model" in result.stdout
    shown = _cli("params", "show", "--set", "game.rounds=3", cwd=repo_root)
    assert shown.returncode == 0
    assert yaml.safe_load(shown.stdout)["game"]["rounds"] == 3


def test_profiles_switch_a_whole_world_and_overrides_still_win(repo_root):
    micro = load_settings(repo_root / "params.yaml")
    assert micro.profile == "micro" and micro.base.enabled and micro.pairs.clevr.edit == "color"
    paper = load_settings(repo_root / "params.yaml", ["profile=paper"])
    assert paper.pairs.image_size == Settings().pairs.image_size and not paper.base.enabled
    assert paper.tracking.experiment == micro.tracking.experiment  # keys no profile fixes stay the file's
    assert load_settings(repo_root / "params.yaml", ["pairs.image_size=140"]).pairs.image_size == 140
    none = load_settings(repo_root / "params.yaml", ["profile=none"])
    assert none.pairs.clevr.colors == micro.pairs.clevr.colors  # the file's own values
    with pytest.raises(SettingsError, match="profile"):
        load_settings(None, ["profile=huge"])


def test_micro_keeps_na_below_the_random_guess_value():
    from visionzero.rl.rewards import guess_candidates, random_guess_value

    s = load_settings(None, ["profile=micro"])
    guess = random_guess_value(guess_candidates(s.game.n_players, s.game.voting), s.rewards)
    assert s.rewards.na < guess


def test_a_file_value_the_profile_overrides_is_named_in_one_warning(tmp_path, caplog):
    path = tmp_path / "params.yaml"
    path.write_text("profile: micro\npairs:\n  image_size: 224\n")
    with caplog.at_level("WARNING", logger="visionzero.settings"):
        assert load_settings(path).pairs.image_size == 112
    (record,) = caplog.records
    assert "pairs.image_size" in record.getMessage() and "profile micro" in record.getMessage()
