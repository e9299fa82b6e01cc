"""Small builders shared by tests (plain images, pair references, a scripted voter)."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from visionzero.rollout.types import Completion, Sampling
from visionzero.train.loop import PairRef


def simple_pairs(folder: Path, n: int, domain: str = "clevr", size: int = 112) -> list[PairRef]:
    """n pairs of plain images (a red square vs a blue disc), enough for game mechanics."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(n):
        a = Image.new("RGB", (size, size), (230, 230, 230))
        b = a.copy()
        box = [8 + 4 * i % 60, 10, 40 + 4 * i % 60, 42]
        ImageDraw.Draw(a).rectangle(box, fill=(200, 0, 0))
        ImageDraw.Draw(b).ellipse(box, fill=(0, 0, 200))
        a.save(folder / f"{domain}{i}_a.png")
        b.save(folder / f"{domain}{i}_b.png")
        pairs.append(PairRef(f"{domain}{i}", domain, str(folder / f"{domain}{i}_a.png"), str(folder / f"{domain}{i}_b.png")))
    return pairs


class ScriptedVoter:
    """Delegates clue turns to a real policy; answers vote turns with seeded scripted votes.

    The votes are real token sequences (tokenised text + end of turn), so both stages train:
    a random tiny model never writes a parseable vote, which leaves every reward equal.
    """

    def __init__(self, policy, n_players: int, encoder):
        self.policy = policy  # any Policy (in-process or a worker)
        self.n_players = n_players
        self.encoder = encoder  # an HFPolicy of the same model: tokenises the scripted votes

    def generate(self, requests, sampling: Sampling, seed: int = 0):
        if requests[0].stage != "decision":
            return self.policy.generate(requests, sampling, seed)
        rng = random.Random(seed)
        tok = self.encoder.loaded.tokenizer
        eot = self.encoder.loaded.end_of_turn_id
        out = []
        for request in requests:
            prompt_ids = self.encoder.encode([request])["input_ids"][0].tolist()
            samples = []
            for _ in range(sampling.n):
                seat = rng.randint(1, self.n_players)
                text = f"Player {seat} looks odd. \\boxed{{{seat}}}" if rng.random() < 0.9 else "Not sure. \\boxed{N/A}"
                ids = tok(text, add_special_tokens=False)["input_ids"] + [eot]
                samples.append(Completion(prompt_ids, ids, text, True))
            out.append(samples)
        return out


def copy_model(src: Path, dst: Path, nudge: float = 0.0) -> Path:
    """Copy a saved model folder; with `nudge`, add it to one weight tensor (other weights, same shapes)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst, dirs_exist_ok=True)
    if nudge:
        weights = dst / "model.safetensors"
        tensors = load_file(weights)
        key = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
        tensors[key] = tensors[key] + nudge
        save_file(tensors, weights, metadata={"format": "pt"})
    return dst


def free_port() -> int:
    """A TCP port free on loopback right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, proc, log: Path, limit: float = 180.0) -> None:
    """Poll `url` until it answers 200; fail with the log's tail if `proc` exits or `limit` s pass."""
    import time
    import urllib.request

    deadline = time.monotonic() + limit
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer: {log.read_text()[-2000:] if log.exists() else 'no log'}")
        time.sleep(0.5)


class MlflowServer:
    """A real `mlflow server` on loopback with its own sqlite store and proxied artifact root
    under `root`; it can be stopped and started again on the same port and store."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> "MlflowServer":
        import subprocess
        import sys

        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                 "--backend-store-uri", f"sqlite:///{self.root}/store.db", "--artifacts-destination", str(self.root / "artifacts")],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
            )  # fmt: skip
        wait_for_http(f"{self.uri}/health", self.proc, self.root / "server.log")
        return self

    def stop(self) -> None:
        import subprocess

        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
            self.proc = None
