"""The embedded default VLM: a tiny Qwen2.5-VL built fully offline.

No weights or tokenizers can be downloaded here, so the default model is made locally:
1. a byte-level BPE tokenizer trained with `tokenizers` on a synthetic corpus of the game's
   vocabulary, with Qwen's special tokens and a Qwen-style chat template;
2. the image-only processor (processor.py) around the PIL Qwen2-VL image processor;
3. a `Qwen2_5_VLForConditionalGeneration` randomly initialised from a small config whose
   sizes come from params.yaml (`model.tiny`), saved with `save_pretrained` (safetensors).
The same seed gives byte-identical files. The result is cached in
`<cache_dir>/tiny-<hash of the settings>` and rebuilt only when the settings change.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

from visionzero.settings.loader import settings_hash
from visionzero.settings.schema import (
    CLEVR_COLORS,
    CLEVR_MATERIALS,
    CLEVR_SHAPES,
    CLEVR_SIZES,
    ModelSettings,
    TinyModelSettings,
)

# Bump when the builder changes in a way that changes its output for the same settings.
BUILDER_VERSION = 3

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen-style template: content may be a string or a list of {"type": "image"|"text"} parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (
    CLEVR_COLORS + CLEVR_SHAPES + CLEVR_MATERIALS + CLEVR_SIZES
    + "cubes spheres cylinders object objects left right front behind middle near far".split()
    + "bar line pie chart title label value legend axis colour color largest smallest".split()
    + "photo scene sky person cat cup rocket tree building region patch edge corner".split()
    + "player seat spy civilian observer clue clues round vote votes image picture".split()
)
_SENTENCES = [
    "You are player {seat} of {n}. You are {role}.",
    "Round {r}. Give one clue about your image.",
    "I see a {size} {color} {material} {shape}. \\boxed{{There is a {color} {shape}.}}",
    "Seat {seat} said: there is a {color} {shape} on the {side}.",
    "No clues have been given yet.",
    "Which player is the spy? Answer \\boxed{{k}} or \\boxed{{N/A}}.",
    "Player {seat} described a {color} {shape} that is not in my picture. \\boxed{{{seat}}}",
    "Nobody looks odd. \\boxed{{N/A}}",
    "The chart shows {color} bars; the largest value is {value}.",
    "In the photo the {thing} on the {side} looks different.",
]


def _game_prompts(rng: random.Random) -> list[str]:
    """The text of real game prompts (every domain, role and stage) with made-up clues.

    Training the tokenizer on them keeps prompts short (few hundred tokens), which is most of
    the tiny model's cost on CPU: prefill and attention grow with prompt length.
    """
    from visionzero.game import (
        clue_request,
        clue_turn_order,
        decision_requests,
        new_game,
        record_clue,
    )
    from visionzero.game.prompts import DOMAINS, clevr_change_hint
    from visionzero.settings.schema import GameSettings

    texts = []
    hints = [None] + [
        clevr_change_hint([{"before": {"shape": "cube"}, "after": {"shape": shape}}] * n)
        for n in (1, 2) for shape in ("cube", "sphere")
    ]  # fmt: skip
    for domain in DOMAINS:
        for n_players, rounds, voting in ((3, 1, "observer"), (4, 2, "observer"), (5, 3, "civilians")):
            settings = GameSettings(n_players=n_players, rounds=rounds, voting=voting)
            hint = rng.choice(hints) if domain == "clevr" else None
            game = new_game("p", domain, "a.png", "b.png", settings, rng.randint(0, 10**6), image_size=(64, 64), hint=hint)
            for round_, seat in clue_turn_order(settings):
                texts.extend(_texts(clue_request(game, round_, seat).messages))
                color, shape = rng.choice(CLEVR_COLORS), rng.choice(CLEVR_SHAPES)
                record_clue(game, round_, seat, f"I see a {color} {shape}. \\boxed{{There is a {color} {shape}.}}")
            for request in decision_requests(game):
                texts.extend(_texts(request.messages))
    return texts


def _texts(messages) -> list[str]:
    return [p["text"] for m in messages for p in m["content"] if isinstance(p, dict) and p.get("type") == "text"]


def _base_replies(rng: random.Random, n: int) -> list[str]:
    """The base stage's replies (base/examples.py): clues, judgements, observer checks."""
    from visionzero.base.examples import check_line, clue_text, judge_prompt

    out = []
    for _ in range(n):
        color, shape = rng.choice(CLEVR_COLORS), rng.choice(CLEVR_SHAPES)
        out.append(clue_text(color, shape))
        out.append(judge_prompt(f"There is a {color} {shape}.") + " " + rng.choice(["yes", "no"]))
        checks = [check_line(seat, rng.choice(CLEVR_COLORS), rng.random() < 0.5) for seat in (1, 2, 3, 4) * 2]
        out.append(" ".join(checks) + f" \\boxed{{{rng.randint(1, 4)}}}")
    return out


def tokenizer_corpus(seed: int, lines: int = 4000) -> list[str]:
    """Synthetic training text for the tokenizer: game prompts, base-stage replies, the game's
    words and sentences."""
    rng = random.Random(seed)
    corpus = [" ".join(_WORDS), *_game_prompts(rng), *_base_replies(rng, 1000)]
    for _ in range(lines):
        corpus.append(
            rng.choice(_SENTENCES).format(
                seat=rng.randint(1, 9), n=rng.randint(3, 9), r=rng.randint(1, 3),
                role=rng.choice(["the SPY", "NOT the spy"]), size=rng.choice(CLEVR_SIZES),
                color=rng.choice(CLEVR_COLORS), material=rng.choice(CLEVR_MATERIALS),
                shape=rng.choice(CLEVR_SHAPES), side=rng.choice(["left", "right", "front", "back"]),
                value=rng.randint(0, 100), thing=rng.choice(_WORDS),
            )
        )
    return corpus


def build_tokenizer(tiny: TinyModelSettings):
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=tiny.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(tokenizer_corpus(tiny.seed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=tiny.max_position_embeddings,
    )


def build_config(tiny: TinyModelSettings, tokenizer):
    from transformers import Qwen2_5_VLConfig

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    head_dim = tiny.hidden_size // tiny.num_heads
    # M-RoPE splits the rotary half-dimension into (temporal, height, width) sections in
    # Qwen's 1/4 : 3/8 : 3/8 proportions (16, 24, 24 for a 128-dim head).
    half = head_dim // 2
    t_sec = max(1, half // 4)
    h_sec = (half - t_sec) // 2
    mrope = [t_sec, h_sec, half - t_sec - h_sec]
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": tiny.hidden_size,
            "intermediate_size": tiny.intermediate_size,
            "num_hidden_layers": tiny.num_layers,
            "num_attention_heads": tiny.num_heads,
            "num_key_value_heads": tiny.num_kv_heads,
            "max_position_embeddings": tiny.max_position_embeddings,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": tiny.vision_depth,
            "hidden_size": tiny.vision_hidden_size,
            "intermediate_size": tiny.vision_intermediate_size,
            "num_heads": tiny.vision_heads,
            "out_hidden_size": tiny.hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [tiny.vision_depth - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def tiny_dir(model: ModelSettings) -> Path:
    key = settings_hash(model.tiny) + f"-v{BUILDER_VERSION}-{model.min_pixels}-{model.max_pixels}"
    return Path(model.cache_dir) / f"tiny-{key}"


def build_tiny(model: ModelSettings, out_dir: str | Path) -> Path:
    """Build the tiny model into `out_dir` (overwritten). Deterministic for the same settings."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from visionzero.models.processor import ImageOnlyQwen2_5_VLProcessor

    tiny = model.tiny
    tokenizer = build_tokenizer(tiny)
    config = build_config(tiny, tokenizer)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=model.min_pixels, max_pixels=model.max_pixels)
    processor = ImageOnlyQwen2_5_VLProcessor(image_processor, tokenizer, chat_template=CHAT_TEMPLATE)

    state = torch.random.get_rng_state()
    torch.manual_seed(tiny.seed)
    try:
        net = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    finally:
        torch.random.set_rng_state(state)
    net.generation_config.eos_token_id = config.text_config.eos_token_id
    net.generation_config.pad_token_id = config.text_config.pad_token_id

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    net.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    (out / "vision_zero_tiny.json").write_text(
        json.dumps({"builder_version": BUILDER_VERSION, "tiny": tiny.model_dump(mode="json")}, indent=2, sort_keys=True)
    )
    return out


def ensure_tiny(model: ModelSettings) -> Path:
    """Return the cached tiny model directory, building it first if its settings changed."""
    target = tiny_dir(model)
    if (target / "vision_zero_tiny.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: a crash never leaves a half-written model behind,
    # and two processes racing both end with a complete directory.
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        build_tiny(model, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "vision_zero_tiny.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
