"""generate-pairs: one domain's image pairs, cached on (params, seed, code)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

import visionzero.pairs as pairs_pkg
from tasks.retry import transient_only
from tasks.session import settings_of


def pairs_code_hash() -> str:
    """Hash of the generator source: a code change invalidates cached pairs."""
    digest = hashlib.sha256()
    for path in sorted(Path(pairs_pkg.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def pairs_cache_key(context, parameters) -> str:
    settings = settings_of(parameters["params"], parameters["overrides"])
    blob = json.dumps(
        {
            "pairs": settings.pairs.model_dump(mode="json"),
            "seed": settings.runtime.seed,
            "domain": parameters["domain"],
            "out": str(Path(parameters["out_dir"]).resolve()),
            "code": pairs_code_hash(),
        },
        sort_keys=True,
    )
    return "pairs-" + hashlib.sha256(blob.encode()).hexdigest()[:24]


def manifest_ready(out_dir: str | Path) -> bool:
    return (Path(out_dir) / "manifest.jsonl").exists()


@task(name="generate-pairs", task_run_name="generate-pairs-{domain}", cache_key_fn=pairs_cache_key, persist_result=True,
      retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient_only)  # fmt: skip
def generate_pairs(params: str, overrides: Sequence[str], domain: str, out_dir: str) -> str:
    """Generate n_train + n_eval pairs of `domain` into `out_dir`; returns the folder."""
    from visionzero.pairs import generate_pairs as generate
    from visionzero.pairs import make_contact_sheet

    s = settings_of(params, overrides)
    report = generate(
        s.pairs, domain, s.pairs.n_train + s.pairs.n_eval, out_dir, seed=s.runtime.seed, n_eval=s.pairs.n_eval
    )
    make_contact_sheet(out_dir, Path(out_dir) / "contact_sheet.png")
    get_run_logger().info(
        "%s: %d train + %d eval pairs in %.1f s -> %s", domain, report.n_train, len(report.records) - report.n_train,
        report.seconds, out_dir,
    )
    return str(out_dir)
