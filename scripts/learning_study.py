"""The learning study (docs/learning.md): does Iterative-SPO improve the embedded base?

For each variant and training seed: `vision-zero train` from the base stage on the micro
world for the same number of iterations, then `vision-zero eval` of the final checkpoint on
the same held-out games (fixed by eval.seed) against the frozen base; the base itself is
evaluated once on the same games. Everything runs through the project's CLI, so a row is
reproduced by the two commands it prints. Variants (METHOD.md section 6 ablations):
  full           Iterative-SPO as the micro profile sets it
  rae_off        role baselines off (rae_alpha 0: advantage = raw zero-sum reward)
  clue_only      only the clue stage trains
  decision_only  only the decision stage trains
Results: OUT/summary.json, OUT/summary.md, OUT/curves.png (training vote accuracy and spy
identification per iteration, every run) and each run's metrics.jsonl; every training and
evaluation is also an MLflow run (experiment `learning-study` in the configured store).

    python scripts/learning_study.py --seeds 0 1 --variants full rae_off clue_only decision_only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VARIANTS = {
    "full": [],
    "rae_off": ["rewards.rae_alpha=0.0"],
    "clue_only": ["train.phase.mode=clue_only"],
    "decision_only": ["train.phase.mode=decision_only"],
}
KEYS = ("game/vote_accuracy", "game/spy_identified", "game/best_constant_seat_accuracy", "game/accuracy_over_constant",
        "game/na_rate", "game/invalid_rate", "game/clue_valid_rate", "game/spy_identifiable", "game/spy_clue_false_rate",
        "game/civilian_clue_true_rate", "win_rate", "match/ci_low", "match/ci_high")  # fmt: skip


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "visionzero.cli.main", *args]


def run(cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=True, timeout=6 * 3600)


def settings_args(pairs_overrides: list[str]) -> list[str]:
    out = []
    for o in pairs_overrides:
        out += ["--set", o]
    return out


def one(variant: str, seed: int, a: argparse.Namespace) -> dict:
    folder = Path(a.out) / f"{variant}-s{seed}"
    budget = [f"train.iterations={a.iterations}"] if a.iterations else []  # default: the profile's
    common = settings_args([f"runtime.seed={seed}", "runtime.threads=1", *budget, f"eval.games={a.games}",
                            "tracking.experiment=learning-study", *a.set, *VARIANTS[variant]])  # fmt: skip
    start = time.perf_counter()
    run(cli("train", "--pairs", a.pairs, "--run-dir", str(folder), "--restart", *common), folder / "train.log")
    trained = time.perf_counter() - start
    ckpt = sorted((folder / "checkpoints").glob("iter-*"))[-1] / "model"
    run(cli("eval", "--model", str(ckpt), "--pairs", a.pairs, "--out", str(folder / "eval.json"), *common), folder / "eval.log")
    result = json.loads((folder / "eval.json").read_text())
    return {"variant": variant, "seed": seed, "train_seconds": round(trained), **{k: result.get(k) for k in KEYS}}


def plot_curves(out: Path, rows: list[dict]) -> None:
    """Training curves of every run (5-iteration moving mean) side by side: OUT/curves.png."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for r in rows:
        if r["seed"] is None:
            continue
        metrics = [json.loads(line) for line in (out / f"{r['variant']}-s{r['seed']}" / "metrics.jsonl").read_text().splitlines()]
        for ax, key in zip(axes, ("game/vote_accuracy", "game/spy_identified")):
            ys = [m[key] for m in metrics]
            smooth = [sum(ys[max(0, i - 4) : i + 1]) / len(ys[max(0, i - 4) : i + 1]) for i in range(len(ys))]
            ax.plot([m["iteration"] for m in metrics], smooth, label=f"{r['variant']} s{r['seed']}")
    base = next(r for r in rows if r["seed"] is None)
    for ax, key in zip(axes, ("game/vote_accuracy", "game/spy_identified")):
        ax.axhline(base[key], color="gray", linestyle="--", label="base (held-out)")
        ax.set_xlabel("iteration")
        ax.set_title(f"training {key.split('/')[-1]} (5-it. mean)")
    axes[0].legend(fontsize=7)
    FigureCanvasAgg(fig).print_png(str(out / "curves.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--iterations", type=int, default=None, help="train.iterations (default: the settings')")
    parser.add_argument("--games", type=int, default=1000, help="held-out games (self-play and the match)")
    parser.add_argument("--pairs", default="runs/pairs/clevr")
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every run (a variant's own come after them)")
    a = parser.parse_args()
    out = Path(a.out)
    base_common = settings_args([f"eval.games={a.games}", "runtime.threads=1", "tracking.experiment=learning-study", *a.set])
    run(cli("eval", "--no-match", "--pairs", a.pairs, "--out", str(out / "base" / "eval.json"), *base_common), out / "base" / "eval.log")
    base = json.loads((out / "base" / "eval.json").read_text())
    rows = [{"variant": "base", "seed": None, "train_seconds": 0, **{k: base.get(k) for k in KEYS}}]
    with ThreadPoolExecutor(a.jobs) as pool:
        rows += list(pool.map(lambda vs: one(*vs, a), [(v, s) for v in a.variants for s in a.seeds]))
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot_curves(out, rows)
    head = "| variant | seed | " + " | ".join(k.split("/")[-1] for k in KEYS) + " |"
    lines = [head, "|" + "---|" * (len(KEYS) + 2)]
    for r in rows:
        cells = ["" if r[k] is None else f"{r[k]:.3f}" for k in KEYS]
        lines.append(f"| {r['variant']} | {'' if r['seed'] is None else r['seed']} | " + " | ".join(cells) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
