"""The embedded tiny VLM: offline build, determinism, caching, reload, generation rules."""

from __future__ import annotations

import hashlib

import pytest
import torch
from PIL import Image

from visionzero.models import ModelLoadError, load_model
from visionzero.models.tiny import build_tiny, ensure_tiny, tiny_dir
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.rollout.types import Sampling
from visionzero.settings import load_settings

pytestmark = pytest.mark.slow


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Chat:
    def __init__(self, image, text="Describe one object."):
        self.messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def red_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "red.png"
    Image.new("RGB", (112, 112), (200, 20, 20)).save(path)
    return str(path)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path, tiny_settings):
    a = build_tiny(tiny_settings.model, tmp_path / "a")
    b = build_tiny(tiny_settings.model, tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert _sha(a / name) == _sha(b / name), name
    other = tiny_settings.model.model_copy(update={"tiny": tiny_settings.model.tiny.model_copy(update={"seed": 1})})
    c = build_tiny(other, tmp_path / "c")
    assert _sha(a / "model.safetensors") != _sha(c / "model.safetensors")


def test_cache_is_reused_and_rebuilt_only_on_change(tmp_path):
    s = load_settings(None, [f"model.cache_dir={tmp_path}"])
    first = ensure_tiny(s.model)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny(s.model) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    bigger = load_settings(None, [f"model.cache_dir={tmp_path}", "model.tiny.num_layers=4"])
    assert tiny_dir(bigger.model) != first
    assert ensure_tiny(bigger.model).exists()
    assert not list(tmp_path.glob("*.tmp-*"))  # builds leave no temporary directories


def test_reloads_through_auto_classes(tiny_settings):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = ensure_tiny(tiny_settings.model)
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "ImageOnlyQwen2_5_VLProcessor"
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")


def test_generates_text_for_an_image_on_cpu(tiny_model, red_png):
    policy = HFPolicy(tiny_model, micro_batch_size=3)
    out = policy.generate([Chat(red_png), Chat(red_png, "What colour?")], Sampling(12, 1.0, n=2), seed=0)
    assert [len(samples) for samples in out] == [2, 2]
    image_pad = tiny_model.token_id("<|image_pad|>")
    for sample in (s for samples in out for s in samples):
        assert 1 <= len(sample.token_ids) <= 12
        assert isinstance(sample.text, str)
        assert sample.prompt_token_ids.count(image_pad) == 16  # 112 px -> 8x8 patches -> 16 merged tokens
    again = policy.generate([Chat(red_png), Chat(red_png, "What colour?")], Sampling(12, 1.0, n=2), seed=0)
    assert [s.token_ids for ss in again for s in ss] == [s.token_ids for ss in out for s in ss]


class _Biased(torch.nn.Module):
    """Wraps the LM head and adds a large logit to chosen tokens."""

    def __init__(self, head, token_ids, bias=60.0):
        super().__init__()
        self.head, self.token_ids, self.bias = head, token_ids, bias

    def forward(self, hidden):
        logits = self.head(hidden)
        logits[..., self.token_ids] += self.bias
        return logits


def test_pad_tokens_are_never_sampled_even_when_favoured(tiny_settings, red_png):
    loaded = load_model(tiny_settings.model, tiny_settings.runtime)
    pads = loaded.suppressed_ids
    loaded.model.lm_head = _Biased(loaded.model.lm_head, pads)
    raw = loaded.model.generate(**HFPolicy(loaded).encode([Chat(red_png)]), max_new_tokens=3, do_sample=False)
    assert set(raw[0, -3:].tolist()) <= set(pads)  # unsuppressed, the model would emit them
    (samples,) = HFPolicy(loaded).generate([Chat(red_png)], Sampling(8, 1.0, n=4), seed=1)
    assert all(not set(s.token_ids) & set(pads) for s in samples)


def test_stops_at_end_of_turn_and_keeps_it(tiny_settings, red_png):
    loaded = load_model(tiny_settings.model, tiny_settings.runtime)
    eot = loaded.end_of_turn_id
    loaded.model.lm_head = _Biased(loaded.model.lm_head, [eot], bias=30.0)
    (samples,) = HFPolicy(loaded).generate([Chat(red_png)], Sampling(16, 1.0, n=3), seed=0)
    for s in samples:
        assert s.finished and s.token_ids[-1] == eot and s.token_ids.count(eot) == 1


def test_bad_spec_is_one_clear_error(tiny_settings, tmp_path):
    with pytest.raises(ModelLoadError, match="model directory not found"):
        load_model(tiny_settings.model, tiny_settings.runtime, spec=str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="cannot read the model config"):
        load_model(tiny_settings.model, tiny_settings.runtime, spec=str(tmp_path / "empty"))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="not supported"):
        load_model(tiny_settings.model, tiny_settings.runtime, spec=str(tmp_path))


def test_pickle_weights_are_refused_in_one_line(tiny_settings, tmp_path):
    """A folder whose weights are a pickle (pytorch_model.bin) is refused before anything is
    unpickled; with model.safetensors beside it the same folder loads."""
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(ensure_tiny(tiny_settings.model), folder)
    weights = folder / "model.safetensors"
    shutil.move(weights, tmp_path / "kept.safetensors")
    torch.save({"not": "weights"}, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pytorch_model.bin.*pickle") as info:
        load_model(tiny_settings.model, tiny_settings.runtime, spec=str(folder))
    assert "\n" not in str(info.value)
    shutil.move(tmp_path / "kept.safetensors", weights)
    assert load_model(tiny_settings.model, tiny_settings.runtime, spec=str(folder)).model is not None


def test_cli_generate(tiny_settings, red_png, capsys):
    from visionzero.cli.main import main

    cache = tiny_settings.model.cache_dir
    assert main(["model", "generate", "--image", red_png, "--set", f"model.cache_dir={cache}", "--max-new-tokens", "6"]) == 0
    assert "tokens" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["model", "generate", "--image", "/no/such.png", "--set", f"model.cache_dir={cache}"])
    assert info.value.code == 2


def test_shared_prefix_sampling_equals_separate_copies(tiny_model, red_png, tmp_path):
    """The G samples of one prompt fork one KV cache; the tokens match n separate prompts."""
    blue = tmp_path / "blue.png"
    Image.new("RGB", (140, 84), (20, 20, 200)).save(blue)
    chats = [Chat(red_png), Chat(str(blue), "A longer question about the colour of the object on the left?")]
    policy = HFPolicy(tiny_model)
    shared = policy.generate(chats, Sampling(10, 0.0, n=3), seed=0)
    copies = policy.generate([c for c in chats for _ in range(3)], Sampling(10, 0.0, n=1), seed=0)
    assert [s.token_ids for ss in shared for s in ss] == [c[0].token_ids for c in copies]
    assert [s.prompt_token_ids for ss in shared for s in ss] == [c[0].prompt_token_ids for c in copies]
    sampled = policy.generate(chats, Sampling(10, 1.0, n=3), seed=5)
    assert len({tuple(s.token_ids) for s in sampled[0]}) > 1  # the forks sample independently
