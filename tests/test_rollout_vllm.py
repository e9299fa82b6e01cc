"""The vLLM engine's translation layer (CPU): requests in vLLM's terms, outputs in ours.

The engine itself needs a GPU and the vLLM environment; these tests pin down what it sends
and how it reads vLLM's answers, with vLLM's documented semantics written out as data.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from PIL import Image

from visionzero.models.tiny import ensure_tiny
from visionzero.rollout.types import Sampling
from visionzero.rollout.vllm_engine import (
    SUPPRESS_BIAS,
    adapter_error,
    completions_from_outputs,
    sampling_kwargs,
    special_token_ids,
    vllm_conversation,
)
from visionzero.settings import SettingsError, load_settings


def test_sampling_kwargs_stop_at_end_of_turn_and_never_sample_pads():
    kw = sampling_kwargs(Sampling(40, temperature=0.7, top_p=0.9, top_k=0, n=8), seed=11, end_of_turn_id=5, suppressed_ids=[7, 9])
    assert kw["n"] == 8 and kw["max_tokens"] == 40 and kw["seed"] == 11
    assert kw["temperature"] == 0.7 and kw["top_p"] == 0.9 and kw["top_k"] == -1  # 0 = off -> vLLM's "off"
    assert kw["stop_token_ids"] == [5]
    assert kw["logit_bias"] == {7: SUPPRESS_BIAS, 9: SUPPRESS_BIAS}
    assert kw["logprobs"] is None  # the update recomputes behaviour log-probs itself
    # nothing else shapes the logits: no penalties, no min_p (vLLM would apply them)
    assert (kw["repetition_penalty"], kw["presence_penalty"], kw["frequency_penalty"], kw["min_p"]) == (1.0, 0.0, 0.0, 0.0)


def test_greedy_sampling_turns_off_nucleus_and_top_k():
    kw = sampling_kwargs(Sampling(8, temperature=0.0, top_p=0.5, top_k=20), seed=0, end_of_turn_id=1, suppressed_ids=[])
    assert (kw["temperature"], kw["top_p"], kw["top_k"]) == (0.0, 1.0, -1)


def test_images_go_inline_and_text_stays():
    messages = [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": [{"type": "image", "image": "blank:16x16"}, {"type": "text", "text": "your clue?"}]},
    ]
    loaded = []
    out = vllm_conversation(messages, lambda ref: loaded.append(ref) or Image.new("RGB", (16, 16)))
    assert out[0] == messages[0]
    image, text = out[1]["content"]
    assert image["type"] == "image_pil" and isinstance(image["image_pil"], Image.Image)
    assert text == {"type": "text", "text": "your clue?"} and loaded == ["blank:16x16"]
    assert messages[1]["content"][0]["type"] == "image"  # the caller's messages are not modified


def test_outputs_keep_request_order_and_end_of_turn_token():
    eot = 3
    outputs = [
        SimpleNamespace(prompt_token_ids=[1, 2], outputs=[
            SimpleNamespace(token_ids=[8, 9, eot], text="a clue"),  # stopped: vLLM keeps the stop token
            SimpleNamespace(token_ids=(8, 8), text="cut"),  # length-capped
        ]),
        SimpleNamespace(prompt_token_ids=[4], outputs=[SimpleNamespace(token_ids=[], text="")]),
    ]  # fmt: skip
    (a, b), (c,) = completions_from_outputs(outputs, eot)
    assert (a.prompt_token_ids, a.token_ids, a.text, a.finished) == ([1, 2], [8, 9, eot], "a clue", True)
    assert (b.token_ids, b.finished) == ([8, 8], False)
    assert (c.prompt_token_ids, c.token_ids, c.finished, c.logprobs) == ([4], [], False, None)


def test_special_ids_come_from_the_model_family(tiny_settings):
    from transformers import AutoTokenizer

    path = ensure_tiny(tiny_settings.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    eot, suppressed = special_token_ids(path, tokenizer)
    assert tokenizer.convert_ids_to_tokens(eot) == "<|im_end|>"
    assert tokenizer.convert_ids_to_tokens(suppressed) == ["<|image_pad|>", "<|video_pad|>"]


def test_lora_adapters_are_refused_up_front(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    assert "LoRA adapter" in adapter_error(tmp_path)
    assert adapter_error(tmp_path / "elsewhere") is None
    with pytest.raises(SettingsError, match="worker_engine=vllm serves full models only"):
        load_settings(None, ["rollout.backend=worker", "rollout.worker_engine=vllm", "train.lora.enabled=true"])


def test_the_orchestration_side_never_imports_vllm():
    import visionzero.rollout.remote  # noqa: F401
    import visionzero.rollout.vllm_engine  # noqa: F401
    import visionzero.rollout.worker  # noqa: F401

    assert "vllm" not in sys.modules


def test_vllm_worker_without_vllm_fails_with_one_clear_line(tiny_settings, tmp_path, capsys):
    from visionzero.cli.main import main
    from visionzero.pairs.generate import generate_pairs

    generate_pairs(load_settings(None, ["pairs.image_size=112"]).pairs, "clevr", 2, tmp_path / "pairs", n_eval=0, workers=1)
    args = ["train", "--params", "/dev/null", "--pairs", str(tmp_path / "pairs"), "--run-dir", str(tmp_path / "run")]
    for o in [f"model.cache_dir={tiny_settings.model.cache_dir}", "runtime.device=cpu",
              "rollout.backend=worker", "rollout.worker_engine=vllm"]:  # fmt: skip
        args += ["--set", o]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vllm is not installed for" in err[0] and "make vllm-env" in err[0]


def test_engine_tells_vllm_to_ignore_the_checkpoints_sampling_defaults(tiny_settings, monkeypatch):
    """vLLM applies generation_config.json defaults unless told `generation_config="vllm"`."""
    from visionzero.rollout.vllm_engine import VllmEngine

    seen = {}

    class FakeLLM:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def get_tokenizer(self):
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(seen["model"])

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=FakeLLM))
    VllmEngine(str(ensure_tiny(tiny_settings.model)))
    assert seen["generation_config"] == "vllm"
