"""A generation worker in its own process (and, for vLLM, its own Python environment).

vLLM cannot be installed beside Prefect (torch, fastapi and transformers pins clash), so
rollouts on a GPU run in a separate process started from the vLLM venv:

    .venv-vllm/bin/python -m visionzero.rollout.worker --engine vllm --model DIR --port 0 --ready-file F

It serves three JSON endpoints on loopback (stdlib http.server; nothing else to install):
    GET  /health    {"model": path, "version": n}
    POST /generate  {"requests": [{"messages": [...]}], "sampling": {...}, "seed": s}
                    -> {"completions": [[{prompt_token_ids, token_ids, text, finished, logprobs}]]}
    POST /load      {"path": checkpoint dir} -> the new policy, without restarting anything
The orchestration side talks to it through `remote.RemotePolicy` and never imports vllm.
Engines: `hf` (transformers, the same code as the in-process backend: runs anywhere, and is
what the CPU tests use) and `vllm` (GPU, `vllm_engine.py`).
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from visionzero.rollout.types import Completion, Sampling


class _Request:
    def __init__(self, messages: list[dict[str, Any]]):
        self.messages = messages


class HFEngine:
    """transformers generate, as in-process (hf_backend.HFPolicy)."""

    def __init__(self, path: str, micro_batch_size: int = 64, threads: int = 1):
        self.micro_batch_size, self.threads = micro_batch_size, threads
        self.load(path)

    def load(self, path: str) -> None:
        from visionzero.models import load_model
        from visionzero.rollout.hf_backend import HFPolicy
        from visionzero.settings import load_settings

        settings = load_settings(None, [f"runtime.threads={self.threads}"])
        self.policy = HFPolicy(load_model(settings.model, settings.runtime, spec=path), self.micro_batch_size)

    def generate(self, requests: list[_Request], sampling: Sampling, seed: int) -> list[list[Completion]]:
        return self.policy.generate(requests, sampling, seed)


def _completion_dict(c: Completion) -> dict[str, Any]:
    return {"prompt_token_ids": c.prompt_token_ids, "token_ids": c.token_ids, "text": c.text,
            "finished": c.finished, "logprobs": c.logprobs}  # fmt: skip


def serve(engine, path: str, host: str, port: int, ready_file: str | None = None) -> None:
    state = {"model": path, "version": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet: one line per request is noise here
            pass

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._reply(200, state) if self.path == "/health" else self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path == "/generate":
                    sampling = Sampling(**body["sampling"])
                    out = engine.generate([_Request(r["messages"]) for r in body["requests"]], sampling, body["seed"])
                    self._reply(200, {"completions": [[_completion_dict(c) for c in cs] for cs in out]})
                elif self.path == "/load":
                    engine.load(body["path"])
                    state.update(model=body["path"], version=state["version"] + 1)
                    self._reply(200, state)
                else:
                    self._reply(404, {"error": "not found"})
            except Exception as exc:  # noqa: BLE001 - the client gets the reason, the worker lives on
                self._reply(500, {"error": f"{type(exc).__name__}: {exc}"})

    server = HTTPServer((host, port), Handler)
    if ready_file:  # tell the parent which port was bound (port 0 = any free port)
        Path(ready_file).write_text(json.dumps({"host": host, "port": server.server_address[1]}))
    server.serve_forever()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["hf", "vllm"], default="hf")
    parser.add_argument("--model", required=True, help="model directory (a checkpoint's model/ or the base)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (see --ready-file)")
    parser.add_argument("--ready-file", help="write {host, port} here once listening")
    parser.add_argument("--micro-batch-size", type=int, default=64)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.4)
    args = parser.parse_args(argv)
    if args.engine == "vllm":
        from visionzero.rollout.vllm_engine import VllmEngine

        try:
            engine = VllmEngine(args.model, args.gpu_memory_utilization)
        except ModuleNotFoundError as exc:  # only the vLLM environment has vllm
            if exc.name != "vllm":
                raise
            raise SystemExit(f"worker: vllm is not installed for {sys.executable}; run `make vllm-env` "
                             "and set rollout.worker_python=.venv-vllm/bin/python") from None  # fmt: skip
    else:
        engine = HFEngine(args.model, args.micro_batch_size)
    serve(engine, args.model, args.host, args.port, args.ready_file)


if __name__ == "__main__":
    main()
