"""A generation worker in its own process (and, for vLLM, its own Python environment).

vLLM cannot be installed beside Prefect (torch, fastapi and transformers pins clash), so
rollouts on a GPU run in a separate process started from the vLLM venv:

    .venv-vllm/bin/python -m visionzero.rollout.worker --engine vllm --model DIR --port 0 --ready-file F

It serves three JSON endpoints on loopback (stdlib http.server; nothing else to install),
every request carrying the run's token (`Authorization: Bearer <VZ_WORKER_TOKEN>`, set by
the parent in the environment, never on the command line):
    GET  /health    {"model": path, "version": n}
    POST /generate  {"requests": [{"messages": [...]}], "sampling": {...}, "seed": s}
                    -> {"completions": [[{prompt_token_ids, token_ids, text, finished, logprobs}]]}
    POST /load      {"path": checkpoint dir} -> the new policy, without restarting anything;
                    only folders under an --allow root (the run's checkpoints, the start model)
Connections are served concurrently (a /health ping answers while a generation runs; the
engine itself runs one call at a time) and a client idle for --idle-timeout s is dropped.
With --parent-pid the worker exits when that process is gone (a killed trainer must not
leave a worker holding a GPU).
The orchestration side talks to it through `remote.RemotePolicy` and never imports vllm.
Engines: `hf` (transformers, the same code as the in-process backend: runs anywhere, and is
what the CPU tests use) and `vllm` (GPU, `vllm_engine.py`).
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


TOKEN_ENV = "VZ_WORKER_TOKEN"


def within(path: str | Path, roots: list[Path]) -> bool:
    """Whether `path` (symlinks resolved) lies inside one of `roots`."""
    real = Path(path).resolve()
    return any(real == r or r in real.parents for r in roots)


def exit_with_parent(parent_pid: int, every: float = 0.5) -> None:
    """A daemon thread that ends this process once `parent_pid` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(engine, path: str, host: str, port: int, ready_file: str | None = None, token: str = "",
          allowed: list[Path] | None = None, idle_timeout: float = 60.0) -> None:  # fmt: skip
    state = {"model": path, "version": 0}
    roots = [Path(r).resolve() for r in (allowed or [Path(path)])]
    busy = threading.Lock()  # one engine call at a time; /health never waits for it

    class Handler(BaseHTTPRequestHandler):
        timeout = idle_timeout  # a client that connects and sends nothing is dropped

        def log_message(self, *args) -> None:  # quiet: one line per request is noise here
            pass

        def _authorised(self) -> bool:
            sent = self.headers.get("Authorization", "")
            if token and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return True
            self._reply(401, {"error": "missing or wrong worker token"})
            return False

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self._authorised():
                self._reply(200, state) if self.path == "/health" else self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorised():
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path == "/generate":
                    sampling = Sampling(**body["sampling"])
                    with busy:
                        out = engine.generate([_Request(r["messages"]) for r in body["requests"]], sampling, body["seed"])
                    self._reply(200, {"completions": [[_completion_dict(c) for c in cs] for cs in out]})
                elif self.path == "/load":
                    if not within(body["path"], roots):
                        self._reply(403, {"error": f"{body['path']} is outside the worker's allowed folders"})
                        return
                    with busy:
                        engine.load(body["path"])
                    state.update(model=body["path"], version=state["version"] + 1)
                    self._reply(200, state)
                else:
                    self._reply(404, {"error": "not found"})
            except Exception as exc:  # noqa: BLE001 - the client gets the reason, the worker lives on
                self._reply(500, {"error": f"{type(exc).__name__}: {exc}"})

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    if ready_file:  # tell the parent which port was bound (port 0 = any free port), whole or not at all
        from visionzero.fileio import write_text_atomic

        write_text_atomic(ready_file, json.dumps({"host": host, "port": server.server_address[1]}))
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
    parser.add_argument("--allow", action="append", default=[],
                        help="a folder /load may read from (repeatable; default: the --model folder)")
    parser.add_argument("--idle-timeout", type=float, default=60.0, help="drop a connection idle this long (s)")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    args = parser.parse_args(argv)
    token = os.environ.pop(TOKEN_ENV, "")
    if not token:
        raise SystemExit(f"worker: set {TOKEN_ENV} (the token every request must carry); WorkerProcess does this")
    if args.parent_pid:
        exit_with_parent(args.parent_pid)
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
    serve(engine, args.model, args.host, args.port, args.ready_file, token,
          [Path(a) for a in args.allow] or None, args.idle_timeout)  # fmt: skip


if __name__ == "__main__":
    main()
