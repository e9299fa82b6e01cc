"""Profiles: named sets of settings, selected with the `profile` key of params.yaml.

Precedence, lowest first: schema defaults < params.yaml < the profile < `--set` overrides.
So `--set profile=paper` (or `dvc exp run -S profile=paper`) switches a whole world at once,
and a key the profile fixes is changed with `--set`, or by choosing `profile: none`.

- `paper`: the paper's values (the schema's defaults) for every key a profile fixes;
- `micro`: the embedded default on a 2-core CPU: a world the tiny model can see (few large
  cubes, colour edits only, 112 px), its base stage, short completions, a CPU budget;
- `none`: nothing fixed: params.yaml alone decides.
"""

from __future__ import annotations

from typing import Any

MICRO: dict[str, Any] = {
    "model": {"spec": "tiny"},
    # the random tiny model learns to see, describe and check clues from scene graphs first
    "base": {"enabled": True},
    "pairs": {
        "domains": ["clevr"],
        "n_train": 2000,
        "n_eval": 1000,  # held-out games for evaluation (issue: >= 1,000)
        "image_size": 112,  # 8x8 patches, 16 image tokens after the 2x2 merge
        "clevr": {
            # A 2-block, 96-wide vision tower grounds colour in minutes but never shape:
            # one shape, one size, large objects, five well-separated colours.
            "min_objects": 2,
            "max_objects": 3,
            "colors": ["red", "blue", "green", "yellow", "purple"],
            "shapes": ["cube"],
            "materials": ["rubber"],
            "sizes": ["large"],
            "object_scale": 1.3,
            "n_edits": 1,
            "edit": "color",
        },
    },
    "game": {
        "clue": {"max_new_tokens": 24},  # "I see a red cube. \boxed{There is a red cube.}" is 16 tokens
        "decision": {"max_new_tokens": 64},  # 8 checks of 6 tokens, then the box
        # G = 2 votes a game over twice the games: each of an iteration's steps sees votes of
        # 64 games, not the same 32 (docs/learning.md section 9: what made the vote read the checks)
        "group_size": 2,
    },
    # A random guess among 4 seats is worth 0.25*1 + 0.75*(-1) = -0.5, exactly the paper's N/A
    # reward: a model at chance then slides into answering N/A (the N/A trap). Below it.
    "rewards": {"na": -1.0},
    # The decision-stage settings of docs/learning.md sections 6-9 (each an option whose
    # default is the paper's): the vote's gradient taken in expectation over the seats and
    # normalised as GRPO does, no policy gradient on the reasoning but a hold on it (an exact
    # KL to the start model), a share of clue turns held as anchors, spies seated evenly.
    "train": {
        "iterations": 70,
        "games_per_iteration": 64,
        "lr": 4e-4,
        "warmup_ratio": 0.02,
        "micro_batch_size": 16,
        "steps_per_iteration": 8,
        "vote_gradient": "expected",
        "vote_std": True,
        "reasoning_weight": 0.0,
        "reasoning_keep": 1.0,
        "kl_beta": 0.0,
        "anchor_inactive": True,
        "anchor_share": 0.125,
        "balanced_seats": True,
        # prompts under no_grad: the backward covers the completions alone, a 1.6x faster
        # decision update, so 70 iterations fit where 60 did (docs/learning.md section 12)
        "prompt_grad": False,
        # The paper's controller: it stays in the decision stage until the vote accuracy's EMA
        # reaches 0.9, which this world's observer never does in a CPU budget.
        "phase": {"mode": "hysteresis"},
    },
    "eval": {"every": 70, "games": 500, "vqa_per_type": 5, "max_new_tokens": 24},
    "tracking": {"viewer_every": 10},
}

PROFILES = ("micro", "paper", "none")


def _keys(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out.extend(_keys(value, (*prefix, key)))
        else:
            out.append((*prefix, key))
    return out


def _get(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def profile_values(name: str) -> dict[str, Any]:
    """The nested values profile `name` fixes (paper: the schema defaults of micro's keys)."""
    if name == "micro":
        import json

        return json.loads(json.dumps(MICRO))
    if name == "none":
        return {}
    if name == "paper":
        from visionzero.settings.loader import settings_dict
        from visionzero.settings.schema import Settings

        defaults = settings_dict(Settings())
        out: dict[str, Any] = {}
        for path in _keys(MICRO):
            _set(out, path, _get(defaults, path))
        return out
    raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")


def apply_profile(data: dict[str, Any], name: str) -> tuple[dict[str, Any], list[str]]:
    """`data` with the profile's values written over it, and the keys where the file said otherwise."""
    import json

    merged = json.loads(json.dumps(data))
    overridden = []
    values = profile_values(name)
    for path in _keys(values):
        value = _get(values, path)
        try:
            mine = _get(data, path)
        except (KeyError, TypeError):
            mine = value
        if mine != value:
            overridden.append(".".join(path))
        _set(merged, path, value)
    return merged, overridden
