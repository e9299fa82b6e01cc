"""The registered model's `python_function` flavour: a Vision-Zero policy answering
(image, prompt) -> text.

`registry.py` logs THIS FILE as an MLflow "model from code": MLflow copies it into the
model and runs it at load time, so loading unpickles nothing. The visionzero package travels
with the model (`code/`), which MLflow puts first on sys.path, so a fresh process that never
imported visionzero (`mlflow.pyfunc.load_model`, `mlflow models serve --env-manager local`)
loads the weights the way the pipeline does: safetensors only, no trust_remote_code, and the
image-only Qwen-VL processor registered before `AutoProcessor` reads the folder.

Weights: `context.artifacts["weights"]` (uploaded with the model, the default), or with
`registry.weights: reference` a content-addressed folder named in the model config
(`weights_dir` + `weights_digest`), whose file sizes are checked before loading.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


@dataclass
class _Request:
    messages: list[dict[str, Any]] = field(default_factory=list)


def _image(value: Any):
    from PIL import Image

    if isinstance(value, str):  # a base64 string (binary columns arrive decoded; be lenient)
        value = base64.b64decode(value)
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError(f"image must be encoded image bytes (PNG/JPEG), got {type(value).__name__}")
    with Image.open(io.BytesIO(bytes(value))) as img:
        return img.convert("RGB")


def _referenced_weights(config: dict[str, Any]) -> str:
    """The content-addressed folder of reference mode, after a size check of every file."""
    import json

    folder = Path(config["weights_dir"])
    manifest = folder / "MANIFEST.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"registered weights {config['weights_digest']} are not at {folder}")
    listed = json.loads(manifest.read_text())
    if listed.get("digest") != config["weights_digest"]:
        raise ValueError(f"{folder} holds {listed.get('digest')}, not {config['weights_digest']}")
    for rel, _sha, size in listed["files"]:
        if not (folder / rel).is_file() or (folder / rel).stat().st_size != size:
            raise ValueError(f"{folder}/{rel} is missing or changed since registration")
    return str(folder)


class VisionZeroPolicy(PythonModel):
    """predict(DataFrame[image: bytes, prompt: str]) -> DataFrame[text: str]."""

    def load_context(self, context) -> None:
        from visionzero.models.loading import load_model
        from visionzero.rollout.hf_backend import HFPolicy
        from visionzero.settings.schema import ModelSettings, RuntimeSettings

        config = dict(context.model_config or {})
        weights = context.artifacts.get("weights") if context.artifacts else None
        weights = weights or _referenced_weights(config)
        model = ModelSettings(
            spec=weights, trust_remote_code=False,  # never run code shipped with weights
            **{k: config[k] for k in ("attn_implementation", "min_pixels", "max_pixels") if k in config},
        )  # fmt: skip
        runtime = RuntimeSettings(device=config.get("device", "auto"), dtype=config.get("dtype", "auto"),
                                  threads=int(config.get("threads", 0)))  # fmt: skip
        self.loaded = load_model(model, runtime)
        self.policy = HFPolicy(self.loaded, int(config.get("micro_batch_size", 8)))
        self.defaults = {"max_new_tokens": int(config.get("max_new_tokens", 64)), "temperature": 0.0, "seed": 0}

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from visionzero.rollout.types import Sampling

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        missing = {"image", "prompt"} - set(frame.columns)
        if missing:
            raise ValueError(f"input needs the columns image and prompt (missing: {', '.join(sorted(missing))})")
        p = {**self.defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
        requests = [
            _Request([{"role": "user", "content": [{"type": "image", "image": _image(img)}, {"type": "text", "text": str(prompt)}]}])
            for img, prompt in zip(frame["image"], frame["prompt"])
        ]
        sampling = Sampling(int(p["max_new_tokens"]), float(p["temperature"]))
        completions = self.policy.generate(requests, sampling, seed=int(p["seed"])) if requests else []
        return pd.DataFrame({"text": [c[0].text for c in completions]})


mlflow.models.set_model(VisionZeroPolicy())
