"""Serve the pipeline as a deployment from this process (no work pool needed).

    prefect server start --host 127.0.0.1 --port 4200 &      # or an existing server
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python -m flows.serve [--cron "0 3 * * *"]
    prefect deployment run vision-zero-pipeline/pipeline      # from another shell

The process keeps running and executes scheduled and triggered runs until stopped.
"""

from __future__ import annotations

import argparse

from flows.pipeline import pipeline_flow

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cron", default=None, help="schedule, e.g. '0 3 * * *' (default: run on demand only)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    pipeline_flow.serve(
        name="pipeline", cron=args.cron, parameters={"params": args.params, "overrides": args.overrides}
    )
