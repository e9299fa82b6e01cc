"""Load a VLM and its processor from a spec: 'tiny', a local directory or a hub id.

Every part of the pipeline loads models through `load_model`, so the embedded tiny model
on CPU and Qwen2.5-VL-7B on a GPU take the same path. Device and dtype come from the
runtime settings; `trust_remote_code` is passed only when the settings turn it on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionzero.errors import first_line
from visionzero.models.families import FAMILIES, ModelFamily, family_for_model_type
from visionzero.settings.schema import ModelSettings, RuntimeSettings


class ModelLoadError(RuntimeError):
    """The model spec cannot be loaded; the message says why in one line."""


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel
    processor: Any  # an image-only processor (processor.py)
    family: ModelFamily
    path: str  # where the weights came from (resolved local dir or hub id)

    def __iter__(self):  # allows `model, processor = load_model(...)`
        return iter((self.model, self.processor))

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def token_id(self, token: str) -> int:
        return int(self.processor.tokenizer.convert_tokens_to_ids(token))

    @property
    def end_of_turn_id(self) -> int:
        return self.family.end_of_turn_id(self.tokenizer)

    @property
    def suppressed_ids(self) -> list[int]:
        """Token ids generation must never sample (image/video pads)."""
        return self.family.suppressed_ids(self.tokenizer)


def resolve_device(runtime: RuntimeSettings) -> str:
    import torch

    if runtime.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if runtime.device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"runtime.device is {runtime.device!r} but CUDA is not available")
    return runtime.device


def resolve_dtype(runtime: RuntimeSettings, device: str):
    import torch

    if runtime.dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, runtime.dtype)


def resolve_spec(model: ModelSettings, spec: str | None = None) -> str:
    """'tiny' -> the built cache directory; anything else is returned as given."""
    spec = spec or model.spec
    if spec == "tiny":
        from visionzero.models.tiny import ensure_tiny

        return str(ensure_tiny(model))
    return spec


def _family(path: str, model: ModelSettings) -> ModelFamily:
    if model.family != "auto":
        return FAMILIES[model.family]
    from transformers import AutoConfig

    if path.startswith(("/", "./", "../", "~")) and not Path(path).expanduser().is_dir():
        raise ModelLoadError(f"model directory not found: {path}")  # not a hub id either
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as exc:
        first = first_line(exc)
        raise ModelLoadError(f"cannot read the model config at {path!r}: {first}") from None
    try:
        return family_for_model_type(config.model_type)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None


def load_model(
    model: ModelSettings,
    runtime: RuntimeSettings,
    spec: str | None = None,
    device: str | None = None,
) -> LoadedModel:
    """Return the model (eval mode, on its device) and its image-only processor."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-shard bars are noise for models this size
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    path = resolve_spec(model, spec)
    adapter = Path(path) / "adapter_config.json"
    if adapter.exists():  # a LoRA checkpoint: its base model, with the adapter merged in
        return _load_adapter(model, runtime, Path(path), device)
    family = _family(path, model)
    device = device or resolve_device(runtime)
    dtype = resolve_dtype(runtime, device)
    # Weights only from safetensors: a pickle checkpoint (pytorch_model.bin) can run code on load.
    kwargs = dict(dtype=dtype, attn_implementation=model.attn_implementation, use_safetensors=True)
    if model.trust_remote_code:
        kwargs["trust_remote_code"] = True
    local = Path(path).expanduser()
    if local.is_dir() and not any(local.glob("*.safetensors")):
        pickles = sorted(p.name for p in local.glob("*.bin")) or ["no weights file"]
        raise ModelLoadError(f"{path}: no .safetensors weights ({', '.join(pickles)}); pickle checkpoints are refused, convert them to safetensors")
    try:
        net = family.model_class().from_pretrained(path, **kwargs).to(device).eval()
    except OSError as exc:
        raise ModelLoadError(f"cannot load the weights at {path!r}: {first_line(exc)}") from None
    processor = family.processor_class.from_pretrained(
        path,
        trust_remote_code=model.trust_remote_code,
        size={"shortest_edge": model.min_pixels, "longest_edge": model.max_pixels},
    )
    processor.tokenizer.padding_side = "left"  # batched generation needs left padding
    return LoadedModel(model=net, processor=processor, family=family, path=path)


def _load_adapter(model: ModelSettings, runtime: RuntimeSettings, path: Path, device: str | None) -> LoadedModel:
    import json

    from peft import PeftModel

    base_path = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base_path:
        raise ModelLoadError(f"{path}: LoRA adapter without base_model_name_or_path")
    base = load_model(model, runtime, spec=base_path, device=device)
    merged = PeftModel.from_pretrained(base.model, str(path)).merge_and_unload().eval()
    return LoadedModel(model=merged, processor=base.processor, family=base.family, path=str(path))
