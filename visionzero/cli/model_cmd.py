"""`vision-zero model`: build the offline tiny VLM, inspect a model, generate for an image."""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from visionzero.cli.common import CliError, add_settings_args, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("model", help="build the tiny VLM, inspect a model, generate text for an image")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    build = actions.add_parser("build-tiny", help="build the offline tiny Qwen2.5-VL (cached by its settings)")
    add_settings_args(build)
    build.add_argument("--out", metavar="DIR", help="build into DIR (overwritten) instead of the cache")
    build.set_defaults(func=_build_tiny)

    prep = actions.add_parser(
        "prepare", help="make the starting model available in model.cache_dir (tiny: build it; with base.enabled, its base stage)"
    )
    add_settings_args(prep)
    prep.add_argument("--retrain", action="store_true", help="train the base stage even when a cached or shipped copy matches")
    prep.add_argument("--metrics", metavar="PATH", help="write the base stage's held-out skills here (flat JSON, a DVC metrics file)")
    prep.set_defaults(func=_prepare)

    info = actions.add_parser("info", help="load a model and print its family, size, device and dtype")
    add_settings_args(info)
    info.add_argument("--spec", help="'tiny', a local directory or a hub id (default: model.spec)")
    info.set_defaults(func=_info)

    gen = actions.add_parser("generate", help="generate a reply to a prompt about one image")
    add_settings_args(gen)
    gen.add_argument("--spec", help="'tiny', a local directory or a hub id (default: model.spec)")
    gen.add_argument("--image", required=True, help="image file")
    gen.add_argument("--prompt", default="Describe the image in one sentence.", help="user text")
    gen.add_argument("--max-new-tokens", type=int, default=48, help="longest reply in tokens")
    gen.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    gen.add_argument("--n", type=int, default=1, help="number of samples")
    gen.set_defaults(func=_generate)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build_tiny(args: argparse.Namespace) -> int:
    from visionzero.models.tiny import build_tiny, ensure_tiny

    settings = settings_from_args(args)
    start = time.perf_counter()
    path = build_tiny(settings.model, args.out) if args.out else ensure_tiny(settings.model)
    weights = Path(path) / "model.safetensors"
    print(f"tiny model: {path}")
    print(f"model.safetensors sha256 {_sha256(weights)} ({weights.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - start:.1f} s)")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    """tiny: build it (and its base stage when enabled); otherwise record which model the run
    starts from (DVC tracks the record)."""
    settings = settings_from_args(args)
    if settings.model.spec == "tiny" and settings.base.enabled:
        return _prepare_base(settings, args)
    if args.metrics:  # not a base stage: no skills
        from visionzero.base.stage import write_skills_metrics

        write_skills_metrics(settings.model.spec, args.metrics)
    if settings.model.spec == "tiny":
        return _build_tiny(argparse.Namespace(**{**vars(args), "out": None}))
    folder = Path(settings.model.cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"spec": settings.model.spec, "local": Path(settings.model.spec).is_dir()}
    if record["local"]:
        config = Path(settings.model.spec) / "config.json"
        record["config_sha256"] = _sha256(config) if config.exists() else None
    (folder / "base_model.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    print(f"base model: {settings.model.spec} (recorded in {folder / 'base_model.json'})")
    return 0


def _prepare_base(settings, args: argparse.Namespace) -> int:
    from visionzero.base.stage import ensure_base, read_record, write_skills_metrics

    start = time.perf_counter()
    folder = ensure_base(settings, force=args.retrain, log_fn=print)
    record = read_record(folder) or {}
    skills = record.get("skills", {})
    print(f"base model: {folder} ({time.perf_counter() - start:.1f} s; trained in {record.get('train_seconds', 0):.0f} s)")
    print("held-out skills: " + ", ".join(f"{k} {v:.3f}" for k, v in skills.items()))
    if args.metrics:
        write_skills_metrics(folder, args.metrics)
    return 0


def _load(args: argparse.Namespace):
    from visionzero.models import ModelLoadError, load_model

    settings = settings_from_args(args)
    try:
        from visionzero.base.stage import starting_spec

        return settings, load_model(settings.model, settings.runtime, spec=args.spec or starting_spec(settings))
    except ModelLoadError as exc:
        raise CliError(str(exc)) from None


def _info(args: argparse.Namespace) -> int:
    _, loaded = _load(args)
    net = loaded.model
    n_params = sum(p.numel() for p in net.parameters())
    print(f"path: {loaded.path}")
    print(f"family: {loaded.family.name}  class: {type(net).__name__}  parameters: {n_params:,}")
    print(f"device: {net.device}  dtype: {net.dtype}  vocab: {len(loaded.tokenizer)}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from visionzero.rollout.hf_backend import HFPolicy
    from visionzero.rollout.types import Sampling

    if not Path(args.image).is_file():
        raise CliError(f"--image {args.image}: no such file")
    settings, loaded = _load(args)

    class Request:
        messages = [{"role": "user", "content": [{"type": "image", "image": args.image}, {"type": "text", "text": args.prompt}]}]

    policy = HFPolicy(loaded)
    try:
        (samples,) = policy.generate(
            [Request()], Sampling(args.max_new_tokens, args.temperature, n=args.n), seed=settings.runtime.seed
        )
    except OSError as exc:
        raise CliError(f"--image {args.image}: cannot read image ({exc})") from None
    for sample in samples:
        end = "end of turn" if sample.finished else "max tokens"
        print(f"[{len(sample.token_ids)} tokens, {end}] {sample.text}")
    return 0
