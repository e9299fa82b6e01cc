"""The typed schema of params.yaml: the single source of truth for every setting.

Every field has a default taken from the Vision-Zero method (../shared/METHOD.md cites the
paper and the released code) and a one-line description. Where the paper and the released
code disagree, both are offered and the description says which is the default and why.
DVC (`params:` in dvc.yaml), the CLI (`--set section.key=value`), the Prefect flows and the
MLflow run parameters all read this schema through `visionzero.settings.load_settings`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CLEVR_COLORS = ["gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"]
CLEVR_SHAPES = ["cube", "sphere", "cylinder"]
CLEVR_MATERIALS = ["rubber", "metal"]
CLEVR_SIZES = ["small", "large"]


class Section(BaseModel):
    """Base of every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


# --------------------------------------------------------------------------- runtime
class RuntimeSettings(Section):
    seed: int = Field(0, ge=0, description="Master seed: pairs, spy seats, sampling and init derive from it.")
    device: str = Field("auto", description="auto (cuda if available, else cpu), cpu, cuda or cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Model dtype; auto = float32 on CPU, bfloat16 on CUDA."
    )
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 keeps torch's default.")
    workdir: str = Field("runs", description="Root folder for run outputs (pairs, games, checkpoints, metrics).")
    python: str = Field("", description="Interpreter of another environment that runs the pipeline's heavy steps as subprocesses; empty = inside the Prefect process.")
    step_timeout: float = Field(7200.0, gt=0.0, description="Longest a step under runtime.python may run (seconds) before it is killed and fails the flow.")


# --------------------------------------------------------------------------- model
class TinyModelSettings(Section):
    """Sizes of the embedded offline Qwen2.5-VL-architecture model (random init)."""

    seed: int = Field(0, ge=0, description="Seed of the tokenizer training corpus and the weight init.")
    vocab_size: int = Field(2048, ge=300, le=65536, description="BPE vocabulary size requested from the trainer (more merges = shorter prompts).")
    hidden_size: int = Field(128, ge=16, description="Text hidden size (a multiple of 2*num_heads).")
    num_layers: int = Field(3, ge=1, description="Text decoder layers.")
    num_heads: int = Field(4, ge=1, description="Text attention heads.")
    num_kv_heads: int = Field(2, ge=1, description="Text key/value heads (grouped-query attention).")
    intermediate_size: int = Field(256, ge=16, description="Text MLP width.")
    vision_hidden_size: int = Field(96, ge=16, description="Vision tower width.")
    vision_depth: int = Field(2, ge=1, description="Vision tower blocks.")
    vision_heads: int = Field(3, ge=1, description="Vision attention heads.")
    vision_intermediate_size: int = Field(192, ge=16, description="Vision MLP width.")
    max_position_embeddings: int = Field(4096, ge=256, description="Longest sequence the tiny model accepts.")

    @model_validator(mode="after")
    def _divisible(self) -> "TinyModelSettings":
        head_dim, rem = divmod(self.hidden_size, self.num_heads)
        if rem or head_dim % 2:
            raise ValueError("hidden_size must be a multiple of 2*num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError("vision_hidden_size must be a multiple of vision_heads")
        return self


class ModelSettings(Section):
    spec: str = Field("tiny", description="'tiny' (built offline), a local model directory, or a hub id.")
    family: Literal["auto", "qwen2_5_vl", "qwen2_vl"] = Field(
        "auto", description="Model family; auto reads model_type from the checkpoint's config."
    )
    trust_remote_code: bool = Field(False, description="Allow code shipped with a checkpoint to run. Off unless you trust it.")
    cache_dir: str = Field(".cache/models", description="Where the tiny model is built (one folder per settings hash).")
    attn_implementation: str = Field("sdpa", description="transformers attention backend (sdpa, eager, flash_attention_2).")
    min_pixels: int = Field(3136, ge=784, description="Smallest image area after the processor's resize (pixels).")
    max_pixels: int = Field(401408, ge=784, description="Largest image area after the processor's resize (pixels).")
    tiny: TinyModelSettings = Field(default_factory=TinyModelSettings, description="Sizes of the tiny model.")


class BaseStageSettings(Section):
    """The base stage: supervised skills from scene graphs, standing in for pretraining."""

    enabled: bool = Field(False, description="Train the tiny model's base skills (clue, judge, observer format) before Iterative-SPO; a real VLM brings them from pretraining.")
    steps: int = Field(3000, ge=1, description="Optimizer steps (about 0.4 s each on 2 CPU threads for the micro world).")
    batch_size: int = Field(16, ge=1, description="Examples per step (fresh ones every step).")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="Peak AdamW learning rate.")
    min_lr: float = Field(1e-4, ge=0.0, le=1.0, description="Learning rate at the end of the cosine decay.")
    warmup_steps: int = Field(50, ge=0, description="Linear warm-up steps.")
    polish_steps: int = Field(1750, ge=0, description="Steps of a second phase at the constant polish_lr with a fresh optimizer (0 = none); where grounding sharpens (false-clue recall 0.30 -> 0.98 in the micro world).")
    polish_lr: float = Field(3e-4, gt=0.0, le=1.0, description="Learning rate of the polish phase.")
    mix_clue: float = Field(0.4, ge=0.0, description="Share of clue examples (name an object of one's own image).")
    mix_judge: float = Field(0.3, ge=0.0, description="Share of judge examples (is a clue true of an image: yes/no).")
    mix_observer: float = Field(0.3, ge=0.0, description="Share of observer examples (per-clue checks, then a random vote).")
    single_object_share: float = Field(0.25, ge=0.0, le=1.0, description="Clue/judge scenes with one object (an easy curriculum for colour grounding).")
    clue_noise: float = Field(0.05, ge=0.0, le=1.0, description="Share of transcript clues naming a random colour (the observer must flag them).")
    na_share: float = Field(0.05, ge=0.0, le=1.0, description="Share of observer targets voting N/A (the vote is random either way).")
    eval_examples: int = Field(200, ge=1, description="Held-out examples per skill in the skills report.")
    vote_prior: float = Field(0.0, ge=0.0, le=1.0, description="Phase 3: share of observer targets whose vote names the one seat the checks flag (the rest vote at random): a weak decision skill for RL to make reliable; 0 = none.")
    vote_prior_steps: int = Field(0, ge=0, description="Steps of phase 3, the observer phase (observer examples, the answer tokens weighted up, half a batch of the usual mix replayed, polish_lr); 0 = no phase 3.")
    observer_summary: bool = Field(False, description="Phase 3 teaches observer reasoning that ends in a summary line naming the one seat its own checks flag ('Odd: 3.', else 'Odd: none.'), loss weighted from that line on; the vote stays random (vote_prior aside). A reasoning step, not a vote: RL still has to learn to vote for it.")
    seed: int = Field(0, ge=0, description="Seed of the examples and the update order.")
    threads: int = Field(2, ge=0, description="torch CPU threads while training the base; 0 keeps torch's default.")

    @model_validator(mode="after")
    def _mix(self) -> "BaseStageSettings":
        if self.mix_clue + self.mix_judge + self.mix_observer <= 0:
            raise ValueError("at least one of mix_clue, mix_judge, mix_observer must be positive")
        if self.min_lr > self.lr:
            raise ValueError("min_lr must be <= lr")
        return self


# --------------------------------------------------------------------------- pairs
class ClevrSettings(Section):
    min_objects: int = Field(4, ge=1, le=12, description="Fewest objects in a scene (paper: 4).")
    max_objects: int = Field(6, ge=1, le=12, description="Most objects in a scene (paper: 6).")
    colors: list[str] = Field(default_factory=lambda: list(CLEVR_COLORS), min_length=2, description="Colour vocabulary.")
    shapes: list[str] = Field(default_factory=lambda: list(CLEVR_SHAPES), min_length=1, description="Shape vocabulary.")
    materials: list[str] = Field(default_factory=lambda: list(CLEVR_MATERIALS), min_length=1, description="Material vocabulary.")
    sizes: list[str] = Field(default_factory=lambda: list(CLEVR_SIZES), min_length=1, description="Size vocabulary.")
    object_scale: float = Field(1.0, gt=0.2, le=3.0, description="Multiplies object sizes (bigger objects help tiny models).")
    n_edits: int = Field(2, ge=1, le=6, description="Objects changed in the spy image (paper: 2).")
    edit: Literal["color_and_shape", "color"] = Field(
        "color_and_shape", description="What an edit changes: colour and shape (paper) or colour only (tiny models)."
    )

    @model_validator(mode="after")
    def _ranges(self) -> "ClevrSettings":
        if self.min_objects > self.max_objects:
            raise ValueError("min_objects must be <= max_objects")
        if self.n_edits > self.min_objects:
            raise ValueError("n_edits must be <= min_objects")
        for name, allowed in (("colors", CLEVR_COLORS), ("shapes", CLEVR_SHAPES),
                              ("materials", CLEVR_MATERIALS), ("sizes", CLEVR_SIZES)):
            values = getattr(self, name)
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise ValueError(f"{name}: unknown {', '.join(unknown)} (known: {', '.join(allowed)})")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: repeated entries")
        if self.edit == "color_and_shape" and len(self.shapes) < 2:
            raise ValueError("edit color_and_shape needs at least two shapes")
        return self


class ChartSettings(Section):
    kinds: list[Literal["bar", "line", "pie"]] = Field(
        default_factory=lambda: ["bar", "line", "pie"], min_length=1, description="Chart types to draw."
    )
    min_values: int = Field(4, ge=3, le=12, description="Fewest data points (labels) per chart.")
    max_values: int = Field(7, ge=3, le=12, description="Most data points (labels) per chart.")
    edit_kinds: list[Literal["values", "labels", "colors"]] = Field(
        default_factory=lambda: ["values", "labels", "colors"], min_length=1, description="Attributes the edit may swap."
    )

    @model_validator(mode="after")
    def _ranges(self) -> "ChartSettings":
        if self.min_values > self.max_values:
            raise ValueError("min_values must be <= max_values")
        return self


class PhotoSettings(Section):
    source: str | None = Field(None, description="Folder of images or of ready pairs; empty = photos shipped with scikit-image.")
    min_size: int = Field(64, ge=16, description="Smallest accepted side of a source image (pixels).")
    max_pixels: int = Field(40_000_000, ge=4096, description="Pixel budget of a source image (width x height, as its header declares, checked before decoding); larger images are skipped with the reason. Bounds memory whatever the input.")
    n_edits: int = Field(2, ge=1, le=4, description="Most regions edited per photo (one or two).")
    edit_kinds: list[Literal["recolor", "remove", "paste", "swap", "mirror"]] = Field(
        default_factory=lambda: ["recolor", "remove", "paste", "swap", "mirror"], min_length=1,
        description="Local edits to pick from (swap exchanges two patches).",
    )


class PairsSettings(Section):
    domains: list[Literal["clevr", "chart", "photo"]] = Field(
        default_factory=lambda: ["clevr"], min_length=1, description="Domains the pipeline trains on."
    )
    n_train: int = Field(2000, ge=1, description="Training pairs per domain (paper: 2,000 CLEVR).")
    n_eval: int = Field(200, ge=1, description="Held-out evaluation pairs per domain, disjoint from training.")
    image_size: int = Field(448, ge=32, le=2048, description="Side of the square images (pixels).")
    workers: int = Field(0, ge=0, description="Worker processes for generation; 0 = one per CPU core.")
    job_timeout: float = Field(300.0, gt=0.0, description="Fail the generation, naming the pairs in flight, when no pair finishes for this many seconds (a stuck or stopped worker).")
    clevr: ClevrSettings = Field(default_factory=ClevrSettings, description="CLEVR-style scenes.")
    chart: ChartSettings = Field(default_factory=ChartSettings, description="Charts.")
    photo: PhotoSettings = Field(default_factory=PhotoSettings, description="Real photos.")


# --------------------------------------------------------------------------- game
class GenerationSettings(Section):
    temperature: float = Field(0.8, ge=0.0, le=5.0, description="Sampling temperature (released code: 0.8); 0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(0, ge=0, description="Top-k sampling; 0 disables it.")
    max_new_tokens: int = Field(1024, ge=1, description="Longest completion (released code: 1024).")


class GameSettings(Section):
    n_players: int = Field(4, ge=3, le=9, description="Seats: n-1 civilians and one spy (paper: 4; votes are single digits).")
    rounds: int = Field(2, ge=1, le=10, description="Clue rounds before the vote (paper: 2).")
    group_size: int = Field(8, ge=2, description="G: observer votes sampled per game, the decision-stage group (paper: 8; one vote leaves every group-normalised advantage 0).")
    spy_image: Literal["edited", "blank"] = Field("edited", description="What the spy sees: the edited image (v1, code) or a blank one (v2).")
    voting: Literal["observer", "civilians"] = Field(
        "observer", description="observer: one prompt sampled G times (released code, v2 appendix); civilians: each civilian votes."
    )
    clue: GenerationSettings = Field(default_factory=GenerationSettings, description="Sampling of clue turns.")
    decision: GenerationSettings = Field(default_factory=GenerationSettings, description="Sampling of vote turns.")


# --------------------------------------------------------------------------- rewards
class RewardSettings(Section):
    decision: Literal["paper", "shaped"] = Field(
        "paper", description="paper: +1/-0.5/-1 (Eq. 4); shaped: the released format+accuracy shaping."
    )
    shaped_format: float = Field(0.3, description="shaped: weight of the format term 2*format_ok-1 (released code: 0.3).")
    shaped_accuracy: float = Field(1.2, description="shaped: weight of the vote's paper reward correct/na/wrong (released code: 1.2).")
    shaped_bonus: float = Field(0.99, description="shaped: bonus for naming the spy (released code: 0.99).")
    correct: float = Field(1.0, description="Decision reward for naming the spy (paper: +1).")
    na: float = Field(-0.5, description="Decision reward for N/A (paper: -0.5). A model at chance needs it below the random-guess value (4 seats: 0.25*1 + 0.75*(-1) = -0.5) or GRPO slides into always abstaining (the N/A trap); the micro profile uses -1.")
    wrong: float = Field(-1.0, description="Decision reward for a wrong or invalid vote (paper: -1).")
    beta: float = Field(0.1, ge=0.0, description="Clue reward: weight of the spy-suspicion gap (paper: 0.1).")
    lambda_: float = Field(0.1, ge=0.0, alias="lambda", description="Clue reward: penalty on a civilian's own votes (paper: 0.1).")
    rae_alpha: float = Field(0.95, ge=0.0, lt=1.0, description="RAE baseline EMA decay (paper 0.95, default; released code 0.9).")
    rae_order: Literal["update_then_subtract", "subtract_then_update"] = Field(
        "update_then_subtract", description="When the current game enters the baseline (released code: update first)."
    )
    na_warn: float = Field(0.5, ge=0.0, le=1.0, description="Warn when the N/A share of votes in an iteration exceeds this.")


# --------------------------------------------------------------------------- train
class PhaseSettings(Section):
    mode: Literal["hysteresis", "alternate", "clue_only", "decision_only"] = Field(
        "hysteresis", description="Stage switching: paper rule (default), released alternation, or an ablation."
    )
    start: Literal["decision", "clue"] = Field("decision", description="Stage of the first iteration (paper: decision).")
    rho: float = Field(0.95, ge=0.0, lt=1.0, description="EMA decay of vote accuracy and N/A rate (paper: 0.95).")
    bias_correction: bool = Field(False, description="Divide the EMAs by 1 - rho^t (not in the paper; switches sooner).")
    to_clue_acc: float = Field(0.9, ge=0.0, le=1.0, description="Decision -> clue when acc EMA >= this (paper: 0.9) ...")
    to_clue_na: float = Field(0.1, ge=0.0, le=1.0, description="... and N/A EMA <= this (paper: 0.1).")
    to_decision_err: float = Field(0.4, ge=0.0, le=1.0, description="Clue -> decision when 1 - acc EMA >= this (paper: 0.4) ...")
    to_decision_na: float = Field(0.5, ge=0.0, le=1.0, description="... or N/A EMA >= this (paper: 0.5).")
    k_min: int = Field(5, ge=1, description="Fewest iterations in a stage before a switch (paper: 5).")
    patience: int = Field(0, ge=0, description="Force a switch after this many iterations in one stage; 0 = never (paper lists 20, unused).")
    period: int = Field(1, ge=1, description="alternate mode: iterations per stage (released code: 1).")


class LoraSettings(Section):
    enabled: bool = Field(False, description="Train LoRA adapters (peft) instead of all weights.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], description="Module names that get adapters."
    )


class TrainSettings(Section):
    iterations: int = Field(100, ge=1, description="Iterative-SPO iterations (paper: 100).")
    games_per_iteration: int = Field(128, ge=1, description="B: games played per iteration (paper: 128).")
    lr: float = Field(1e-5, gt=0.0, le=1.0, description="AdamW learning rate (paper: 1e-5).")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="Share of steps with linear warm-up before the cosine decay.")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="The cosine decays to this share of lr (transformers' cosine_with_min_lr; 0 = to zero, the paper's cosine; 1 = constant after the warm-up).")
    clip_eps: float = Field(0.2, gt=0.0, lt=1.0, description="PPO ratio clip epsilon (paper: 0.2).")
    kl_beta: float = Field(0.04, ge=0.0, description="Weight of the k3 KL to the frozen start model (paper: 0.04); 0 skips the reference.")
    grad_clip: float = Field(1.0, gt=0.0, description="Max global gradient norm.")
    anchor_inactive: bool = Field(False, description="Also pass the inactive stage's completions through the KL term alone (no policy gradient), so one stage's updates cannot reshape the other's outputs in the shared weights; with train.reasoning_keep the keep holds them too, over their whole completion; off = the paper (only the active stage's samples).")
    anchor_share: float = Field(1.0, gt=0.0, le=1.0, description="With anchor_inactive: the share of the inactive stage's completions passed as anchors, drawn afresh each iteration (seeded by it), so the hold still reaches every kind of turn; the anchors' forward/backward is over half of a decision update with 2 rounds of clues (docs/learning.md section 7); 1 = all of them.")
    reasoning_weight: float = Field(1.0, ge=0.0, le=1.0, description="Weight of the policy-gradient term on reasoning tokens relative to the answer (from the last \\boxed on): 1 = every token alike (paper); below 1 puts the advantage where the vote or clue is decided (the KL still covers every token).")
    reasoning_keep: float = Field(0.0, ge=0.0, description="Weight of the exact KL(start model || policy) over the whole vocabulary at every token the policy gradient does not train (the reasoning before the answer; with vote_gradient=expected all but the vote's digit; anchors and box-less votes whole): distillation that holds them at the start model's while the advantage trains the answer, so a gradient on the vote alone cannot rewrite the reasoning through the shared weights (AdamW moves every weight at the lr whatever its gradient's size); 0 = the paper.")
    vote_gradient: Literal["sampled", "expected"] = Field("sampled", description="The vote token's policy gradient: sampled = from the sampled seat and its group advantage (GRPO, the paper); expected = the exact gradient of its expected reward over every seat (each seat's reward is verifiable), same objective without the vote's sampling noise (train/loss.py).")
    vote_std: bool = Field(False, description="With vote_gradient=expected: divide each vote's expected-reward term by the standard deviation of its reward under the policy (GRPO's (r - mean) / (std + eps), taken in expectation), so the push on the right seat is ~sqrt(q(1-q)) instead of 2q(1-q) of its probability q and a seat the vote has nearly abandoned still comes back (train/loss.py); False = the raw expected reward.")
    vote_keep: float = Field(0.0, ge=0.0, description="With vote_gradient=expected: weight of the exact KL(start model || policy) at the vote's digit. Its gradient on seat k's logit is p_k - ref_k, not weighted by p_k as the expected reward's is, so a seat the vote has abandoned is pulled back (without it the vote collapsed onto two seats, docs/learning.md section 6); 0 = the paper.")
    micro_batch_size: int = Field(8, ge=1, description="Sequences per forward/backward pass (a multiple of game.group_size lets the votes share their prompt).")
    share_prompts: bool = Field(True, description="Run a group's common prompt once and its completions on the repeated KV cache: the same loss and gradients, a ~3x faster vote-stage update (bench_update; off with gradient checkpointing).")
    prompt_grad: bool = Field(True, description="Backpropagate through the prompts (their text and image tokens, the vision tower): True = the exact gradient (the paper). False runs each prompt under no_grad and its completion on the prompt's KV cache, so the gradient flows only through the completion tokens' own activations (their attention to the prompt's keys and values held fixed) and the vision tower does not train: the backward covers the completions alone, a ~1.5-2x faster update where prompts are long (bench_update; docs/learning.md section 12). Needs the KV cache: off with gradient checkpointing.")
    steps_per_iteration: int = Field(1, ge=1, description="Optimizer steps per iteration (the samples are split evenly; micro-batches accumulate).")
    epochs: int = Field(1, ge=1, description="Passes over each iteration's samples, each of steps_per_iteration steps (GRPO's mu, TRL's num_iterations; paper: 1). Later passes reuse the rollout, their ratios taken to the policy that sampled it (clipped): more updates per rollout where generation is the cost (a CPU).")
    step_mix: Literal["games", "groups"] = Field("games", description="With several steps per iteration: games = each step takes a share of every game's samples (each step sees all the iteration's games); groups = contiguous slices, a game's group whole on one step (its prompt shared whole, a faster update, but each step sees few games and their spies' seats drown the vote's dependence on the reasoning).")
    balanced_seats: bool = Field(False, description="Seat the training games' spies by a stratified draw (each block of n_players games a random permutation of the seats), so an iteration of a multiple of n_players games has as many spies in every seat: each game's seat stays uniform, but the vote's gradient no longer pushes towards whichever seat held more spies in the batch (docs/learning.md section 6); False = independent draws (the paper). Evaluation games always draw independently.")
    gradient_checkpointing: Literal["auto", "on", "off"] = Field("auto", description="auto = on for CUDA, off on CPU.")
    checkpoint_every: int = Field(1, ge=1, description="Save a resumable checkpoint every N iterations (and at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="Newest checkpoints kept on disk (a 7B checkpoint is ~16 GB).")
    phase: PhaseSettings = Field(default_factory=PhaseSettings, description="Iterative-SPO stage controller.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="Optional LoRA.")

    @model_validator(mode="after")
    def _expected_vote_options(self) -> "TrainSettings":
        if self.vote_keep > 0 and self.vote_gradient != "expected":
            raise ValueError("train.vote_keep holds the vote taken in expectation: set train.vote_gradient=expected")
        if self.vote_std and self.vote_gradient != "expected":
            raise ValueError("train.vote_std normalises the vote taken in expectation: set train.vote_gradient=expected")
        return self


# --------------------------------------------------------------------------- rollout
class RolloutSettings(Section):
    backend: Literal["hf", "worker"] = Field(
        "hf", description="hf: transformers generate in this process; worker: a separate generation process (worker_engine) that loads each new checkpoint."
    )
    worker_engine: Literal["hf", "vllm"] = Field("hf", description="Engine of the worker process: vllm (GPU, its own venv) or hf.")
    worker_python: str = Field("", description="Interpreter of the worker's environment, e.g. .venv-vllm/bin/python; empty = this one.")
    gpu_memory_utilization: float = Field(0.4, gt=0.0, le=1.0, description="Share of GPU memory the vLLM worker may take.")
    worker_timeout: float = Field(900.0, gt=0.0, description="Longest one worker call (a generation batch, a weight load) may take, in seconds, before the step fails.")
    worker_heartbeat: float = Field(10.0, gt=0.0, description="While a worker call waits: check every this many seconds that the worker lives (process up, not stopped, /health answering within it).")
    micro_batch_size: int = Field(64, ge=1, description="Most sequences in one HF generate call (bounds memory).")


# --------------------------------------------------------------------------- eval
class EvalSettings(Section):
    every: int = Field(10, ge=1, description="Evaluate every k iterations (and after the last).")
    games: int = Field(64, ge=2, description="Held-out games per evaluation and domain (fixed, seeded).")
    match: bool = Field(True, description="Play the mirrored match against the opponent (win rate); false = held-out self-play and VQA only.")
    opponent: str = Field("base", description="Frozen opponent for the win rate: 'base' (the starting model) or a model spec.")
    vqa_per_type: int = Field(20, ge=0, description="Verifiable VQA questions per question type.")
    max_new_tokens: int = Field(128, ge=1, description="Longest answer in evaluation.")
    seed: int = Field(0, ge=0, description="Seed of the evaluation set (spy seats, questions, sampling), apart from runtime.seed so every model meets identical games.")
    confidence: float = Field(0.95, gt=0.0, lt=1.0, description="Confidence level of the win-rate interval (Wilson score).")
    vqa_temperature: float = Field(0.0, ge=0.0, le=5.0, description="Sampling temperature of VQA answers; 0 = greedy.")
    temperature: float | None = Field(
        0.0, ge=0.0, le=5.0,
        description="Sampling temperature of the held-out games' clue and vote turns; 0 = greedy (a policy's own choices, as verl validates), null = the game's training temperatures (game.clue/decision.temperature).",
    )  # fmt: skip


# --------------------------------------------------------------------------- tracking
class TrackingSettings(Section):
    enabled: bool = Field(True, description="Log runs to MLflow.")
    uri: str = Field("sqlite:///mlflow.db", description="MLflow tracking URI (local sqlite by default, or a server URL).")
    experiment: str = Field("vision-zero", description="MLflow experiment name.")
    viewer_every: int = Field(5, ge=1, description="Attach a game-viewer page every k iterations.")


class RegistrySettings(Section):
    model_name: str = Field("vision-zero", description="Registered model name in the MLflow registry.")
    metric: str = Field("win_rate", description="Evaluation metric the promotion gate compares (higher is better).")
    margin: float = Field(0.0, ge=0.0, description="The challenger must beat the champion by more than this.")
    beat_opponent: bool = Field(
        True, description="Promote only a model that won its evaluation match against the frozen opponent: match/ci_low (the win rate's 95% interval) above 0.5. A first champion is then promoted on merit, not for being first; an evaluation without a match skips this check."
    )
    challenger_alias: str = Field("challenger", description="Alias given to every newly registered version.")
    champion_alias: str = Field("champion", description="Alias moved by the promotion gate.")
    weights: Literal["upload", "reference"] = Field(
        "upload", description="How a version holds its weights: upload (copied into the run's artifact store with the MLflow model) or reference (copied once into registry.store under their sha256; the model holds the path and digest, checked at load). Never the training's checkpoint folder, which later runs overwrite."
    )
    store: str = Field("", description="Content-addressed weights folder for weights=reference (a shared disk for multi-GB models); empty = <runtime.workdir>/model-store.")


# --------------------------------------------------------------------------- root
class Settings(Section):
    profile: Literal["paper", "micro", "none"] = Field(
        "paper", description="Named world and budget written over this file (settings/profiles.py): paper (the paper's values), micro (the tiny model on a CPU), none."
    )
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings, description="Seed, device, dtype.")
    model: ModelSettings = Field(default_factory=ModelSettings, description="Which VLM and how to load it.")
    base: BaseStageSettings = Field(default_factory=BaseStageSettings, description="Base stage of the tiny model (supervised, from scene graphs).")
    pairs: PairsSettings = Field(default_factory=PairsSettings, description="Image-pair generation.")
    game: GameSettings = Field(default_factory=GameSettings, description="The 'Who is the spy?' game.")
    rewards: RewardSettings = Field(default_factory=RewardSettings, description="Rewards and advantages.")
    train: TrainSettings = Field(default_factory=TrainSettings, description="Iterative-SPO training.")
    rollout: RolloutSettings = Field(default_factory=RolloutSettings, description="Generation backends.")
    eval: EvalSettings = Field(default_factory=EvalSettings, description="Evaluation.")
    tracking: TrackingSettings = Field(default_factory=TrackingSettings, description="MLflow tracking.")
    registry: RegistrySettings = Field(default_factory=RegistrySettings, description="MLflow model registry and promotion.")

    @model_validator(mode="after")
    def _serveable_policy(self) -> "Settings":
        # Checkpoints of a LoRA run hold adapters, which the vLLM worker cannot load as a model.
        if self.rollout.backend == "worker" and self.rollout.worker_engine == "vllm" and self.train.lora.enabled:
            raise ValueError("rollout.worker_engine=vllm serves full models only; set train.lora.enabled=false or rollout.worker_engine=hf")
        return self
