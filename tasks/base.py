"""base-stage: the starting model of the run (the tiny model's base stage, cached on its key)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from tasks.session import settings_of


@task(name="base-stage", retries=1, retry_delay_seconds=[5])
def prepare_base_model(params: str, overrides: Sequence[str], metrics_path: str | None = None) -> str:
    """The model Iterative-SPO starts from. With base.enabled on the tiny model: the base
    stage's output (a cached folder, the shipped copy, or ~20 CPU-minutes of training);
    else model.spec. Writes the base's held-out skills to `metrics_path` when given."""
    from visionzero.base.stage import read_record, skills_metrics, starting_spec
    from visionzero.fileio import write_text_atomic

    logger = get_run_logger()
    s = settings_of(params, overrides)
    spec = starting_spec(s)
    record = read_record(spec) if Path(spec).is_dir() else None
    if record is not None:
        logger.info("base stage %s: %s", spec, ", ".join(f"{k} {v:.3f}" for k, v in record["skills"].items()))
    if metrics_path:
        write_text_atomic(metrics_path, json.dumps(skills_metrics(spec) if record else {}, indent=2, sort_keys=True) + "\n")
    return spec
