"""Report tasks: game viewer pages and run curves (files the tracking tasks then attach)."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from visionzero.eval.results import read_curve
from visionzero.game import read_records
from visionzero.game.viewer import write_viewer
from visionzero.train.report import plot_curves, write_curves, write_rows_csv, write_summary


@task(name="game-viewer", task_run_name="game-viewer-it{iteration}")
def game_viewer(games: str, title: str, iteration: int) -> str:
    """One self-contained HTML page of the games in a records file."""
    path = Path(games).with_name("games.html")
    return str(write_viewer(path, read_records(games), title=title))


@task(name="training-report")
def training_report(run_dir: str) -> list[str]:
    """curves.csv and eval/curve.csv (DVC plots), summary.json (DVC metrics), curves.png (MLflow)."""
    evals = write_rows_csv(read_curve(Path(run_dir) / "eval" / "curve.jsonl"), Path(run_dir) / "eval" / "curve.csv")
    return [str(write_curves(run_dir)), str(evals), str(write_summary(run_dir)), str(plot_curves(run_dir))]
