"""Where the pipeline keeps its files, derived from the settings (runtime.workdir)."""

from __future__ import annotations

from pathlib import Path

from visionzero.settings import Settings


def pairs_dir(s: Settings, domain: str) -> str:
    return str(Path(s.runtime.workdir) / "pairs" / domain)


def pairs_dirs(s: Settings) -> list[str]:
    return [pairs_dir(s, d) for d in s.pairs.domains]


def domain_tags(s: Settings) -> list[str]:
    """Prefect tags of the runs that use every configured domain (training, evaluation)."""
    return [f"domain:{d}" for d in s.pairs.domains]


def train_dir(s: Settings) -> str:
    return str(Path(s.runtime.workdir) / "train")


def eval_dir(s: Settings) -> str:
    return str(Path(s.runtime.workdir) / "eval")


def register_dir(s: Settings) -> str:
    return str(Path(s.runtime.workdir) / "register")


def base_metrics(s: Settings) -> str:
    """The base stage's held-out skills (a DVC metrics file)."""
    return str(Path(s.runtime.workdir) / "base" / "skills.json")
