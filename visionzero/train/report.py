"""Per-iteration curves and a summary of a training run, for DVC (csv/json) and humans (png)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from visionzero.train.loop import read_metrics

CURVE_COLUMNS = [
    "iteration", "stage_id", "game/vote_accuracy", "game/na_rate", "game/invalid_rate", "game/spy_identified",
    "game/decision_reward_mean", "game/clue_reward_spy_mean", "game/clue_reward_civ_mean", "game/rae_b_spy",
    "game/rae_b_civ", "game/frac_reward_zero_std", "update/loss", "update/kl", "update/entropy",
    "update/clip_frac", "update/completion_len", "controller/acc_ema", "controller/na_ema",
]  # fmt: skip
# No timings in curves.csv or summary.json: DVC commits them as plots and metrics, and the
# same seed must give the same bytes. Iteration times stay in metrics.jsonl and MLflow.
SUMMARY_KEYS = ["iteration", "game/vote_accuracy", "game/na_rate", "game/spy_identified", "update/kl", "controller/acc_ema"]


def write_curves(run_dir: str | Path) -> Path:
    """curves.csv: one row per iteration (stage_id: 0 decision, 1 clue, as in the paper)."""
    rows = [{**m, "stage_id": 1 if m["stage"] == "clue" else 0} for m in read_metrics(run_dir)]
    return write_rows_csv(rows, Path(run_dir) / "curves.csv", CURVE_COLUMNS)


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_summary(run_dir: str | Path) -> Path:
    """summary.json: the last iteration's key numbers and the stage switches (DVC metrics)."""
    rows = read_metrics(run_dir)
    last = rows[-1] if rows else {}
    summary = {k.replace("/", "_"): last[k] for k in SUMMARY_KEYS if k in last}
    summary["stage_switches"] = sum(bool(m.get("switched")) for m in rows)
    summary["clue_iterations"] = sum(m["stage"] == "clue" for m in rows)
    path = Path(run_dir) / "summary.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True))
    return path


def plot_curves(run_dir: str | Path) -> Path:
    """curves.png: accuracy, N/A rate, rewards, KL and stage over iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    x = [m["iteration"] for m in rows]
    panels = [
        ("votes", ["game/vote_accuracy", "game/na_rate", "controller/acc_ema", "controller/na_ema"]),
        ("rewards", ["game/decision_reward_mean", "game/clue_reward_spy_mean", "game/clue_reward_civ_mean"]),
        ("update", ["update/loss", "update/kl", "update/entropy"]),
    ]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(16, 3.6))
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            ax.plot(x, [m.get(key, float("nan")) for m in rows], marker=".", label=key.split("/")[-1])
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
    axes[-1].step(x, [1 if m["stage"] == "clue" else 0 for m in rows], where="post")
    axes[-1].set_yticks([0, 1], ["decision", "clue"])
    axes[-1].set_title("stage")
    fig.tight_layout()
    path = Path(run_dir) / "curves.png"
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return path


def write_rows_csv(rows: list[dict], path: str | Path, columns: list[str] | None = None) -> Path:
    """Rows of numbers as CSV, `/` in names as `_` (DVC plots). Columns: the given ones, or
    `iteration` then every other key sorted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or ["iteration"] + sorted({k for r in rows for k in r} - {"iteration"})
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([c.replace("/", "_") for c in columns])
        for r in rows:
            writer.writerow([_fmt(r.get(c, "")) for c in columns])
    return path
