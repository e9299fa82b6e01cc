"""Continue a base model with phase 3 of the base stage, then measure its held-out skills.

Algorithm: load `--start` (default: the shipped micro base, i.e. phases 1-2), run
`vote_prior_phase` (base/sft.py: observer examples with the answer tokens weighted up, half a
batch of the usual mix replayed, polish_lr) for `--steps` steps under the given settings
(`--set base.observer_summary=true`, `--set base.vote_prior=0.5`, ...), measure the skills
greedily (base/skills.py) and save the model with its record in `--out`. A study tool for
docs/learning.md (section 3); `ensure_base` builds the same phase from scratch when the
settings ask for it.

    python scripts/base_phase3.py --steps 400 --out /tmp/phase3 --set base.observer_summary=true
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from visionzero.base.sft import vote_prior_phase
from visionzero.base.skills import measure_skills
from visionzero.base.stage import RECORD, SHIPPED, base_inputs, base_key
from visionzero.models.loading import load_model
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--start", default=str(SHIPPED), help="model folder to continue (default: the shipped base)")
    parser.add_argument("--out", required=True, help="folder for the model and its base_stage.json")
    parser.add_argument("--set", action="append", default=[], help="section.key=value (repeatable)")
    args = parser.parse_args()
    s = load_settings(None, ["profile=micro", "runtime.threads=1", "base.threads=1",
                             f"base.vote_prior_steps={args.steps}", *args.set])  # fmt: skip
    torch.set_num_threads(1)
    torch.manual_seed(s.base.seed)
    loaded = load_model(s.model, s.runtime, spec=args.start)
    start = time.perf_counter()
    curve = vote_prior_phase(loaded, s, log=print, log_every=50)
    seconds = time.perf_counter() - start
    skills = measure_skills(HFPolicy(loaded, s.rollout.micro_batch_size), s)
    print(json.dumps(skills, indent=1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(out, safe_serialization=True)
    loaded.processor.save_pretrained(out)
    record = {"key": base_key(s), "inputs": base_inputs(s), "skills": skills, "curve": curve,
              "phase3_seconds": round(seconds, 1), "started_from": args.start}  # fmt: skip
    (out / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"saved {out} (key {record['key']}, {seconds:.0f} s)")


if __name__ == "__main__":
    main()
