"""The policy update on the real tiny VLM: masking, KL, direction of the step, accumulation."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from visionzero.models import load_model
from visionzero.rollout.hf_backend import HFPolicy
from visionzero.rollout.types import Sampling
from visionzero.settings import load_settings
from visionzero.train.batch import collate, completion_logits
from visionzero.train.loss import clipped_pg_loss, expected_vote_loss, k3_kl, token_logprobs
from visionzero.train.samples import TrainSample
from visionzero.train.update import PolicyTrainer, cosine_with_warmup, seat_token_ids, share_of

pytestmark = pytest.mark.slow


class Chat:
    def __init__(self, image, text):
        self.messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def samples(tiny_model, tmp_path_factory):
    """Eight real completions of the tiny model on two images of different sizes."""
    folder = tmp_path_factory.mktemp("imgs")
    Image.new("RGB", (112, 112), (200, 20, 20)).save(folder / "red.png")
    Image.new("RGB", (140, 84), (20, 20, 200)).save(folder / "blue.png")
    chats = [Chat(str(folder / "red.png"), "Describe."), Chat(str(folder / "blue.png"), "Which colour is on the left?")]
    out = HFPolicy(tiny_model).generate(chats, Sampling(10, 1.0, n=4), seed=0)
    made = []
    for i, (chat, completions) in enumerate(zip(chats, out)):
        for j, c in enumerate(completions):
            image = chat.messages[0]["content"][0]["image"]
            made.append(TrainSample(c.prompt_token_ids, c.token_ids, [image], 1.0 if j % 2 == 0 else -1.0, "decision" if i == 0 else "clue"))
    return made


def _trainer(tiny_settings, *overrides):
    s = load_settings(None, [f"model.cache_dir={tiny_settings.model.cache_dir}", "runtime.device=cpu", *overrides])
    loaded = load_model(s.model, s.runtime)
    return PolicyTrainer(loaded, s.train), loaded


def _grads(trainer):
    return {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def _logps(model, loaded, samples):
    batch = collate(samples, loaded.processor, loaded.tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        return token_logprobs(completion_logits(model, batch), batch.completion_ids), batch.completion_mask


def test_padded_batch_logprobs_equal_one_at_a_time(tiny_model, samples):
    batched, mask = _logps(tiny_model.model, tiny_model, samples)
    for row, s in enumerate(samples):
        alone, _ = _logps(tiny_model.model, tiny_model, [s])
        n = len(s.completion_ids)
        assert int(mask[row].sum()) == n
        torch.testing.assert_close(batched[row, :n], alone[0, :n], atol=1e-5, rtol=0)


def test_shared_prompts_give_the_same_logits_and_gradients(tiny_model, samples):
    """Two prompts (images of different sizes) x 4 completions: prompts once + repeated KV
    cache must equal the 8 padded copies, in the log-probs and in every parameter's gradient."""
    model, proc, pad = tiny_model.model, tiny_model.processor, tiny_model.tokenizer.pad_token_id
    results = []
    for share in (False, True):
        batch = collate(samples, proc, pad, "cpu", share_prompts=share)
        assert batch.group_size == (4 if share else 1)
        assert batch.inputs["input_ids"].shape[0] == (2 if share else 8)
        model.zero_grad(set_to_none=True)
        logp = token_logprobs(completion_logits(model, batch), batch.completion_ids) * batch.completion_mask
        (logp.sum() + (logp * torch.arange(logp.shape[1])).sum() * 0.1).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((logp.detach(), grads))
    model.zero_grad(set_to_none=True)
    (plain, plain_grads), (shared, shared_grads) = results
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=0)
    assert plain_grads.keys() == shared_grads.keys() and len(plain_grads) > 10
    for name, grad in plain_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=1e-5, rtol=1e-4)
    # unequal groups (3 + 4) or a lone prompt fall back to the padded layout
    assert collate(samples[1:], proc, pad, "cpu", share_prompts=True).group_size == 1
    assert collate(samples[:1], proc, pad, "cpu", share_prompts=True).group_size == 1


@pytest.mark.parametrize("share", [False, True])
def test_detached_prompts_keep_the_logits_and_train_only_through_the_completions(tiny_model, samples, share):
    """train.prompt_grad=false: the same log-probs (one prompt a completion, or shared); the
    final norm's gradient (a function of the completions' hidden states alone) unchanged;
    the vision tower, seen only through the prompt, gets none; the text layers' gradients
    change (their path through the prompt's keys and values is cut)."""
    model, proc, pad = tiny_model.model, tiny_model.processor, tiny_model.tokenizer.pad_token_id
    results = []
    for prompt_grad in (True, False):
        batch = collate(samples, proc, pad, "cpu", share_prompts=share, prompt_grad=prompt_grad)
        assert batch.split == (share or not prompt_grad)
        model.zero_grad(set_to_none=True)
        logp = token_logprobs(completion_logits(model, batch), batch.completion_ids) * batch.completion_mask
        (logp.sum() + (logp * torch.arange(logp.shape[1])).sum() * 0.1).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        results.append((logp.detach(), grads))
    model.zero_grad(set_to_none=True)
    (exact, exact_grads), (detached, detached_grads) = results
    torch.testing.assert_close(detached, exact, atol=1e-5, rtol=0)
    head = [n for n in exact_grads if n.endswith("language_model.norm.weight")]
    assert head and all(torch.allclose(detached_grads[n], exact_grads[n], atol=1e-5, rtol=1e-4) for n in head)
    assert any("visual" in n for n in exact_grads) and not any("visual" in n for n in detached_grads)
    layer = next(n for n in exact_grads if "layers.0." in n and "q_proj.weight" in n and "visual" not in n)
    assert not torch.allclose(detached_grads[layer], exact_grads[layer], atol=1e-6, rtol=1e-3)


def test_detached_prompts_refuse_gradient_checkpointing(tiny_settings):
    with pytest.raises(ValueError, match="gradient_checkpointing=off"):
        _trainer(tiny_settings, "train.prompt_grad=false", "train.gradient_checkpointing='on'")


def test_inactive_stage_samples_get_no_gradient(tiny_settings, samples):
    decision = [s for s in samples if s.stage == "decision"]
    t1, _ = _trainer(tiny_settings, "train.lr=1e-9")
    t1.optimizer.zero_grad()
    for micro in t1._micro_batches(decision):
        t1._accumulate(micro, n_total=len(decision))
    only_active = _grads(t1)
    t2, _ = _trainer(tiny_settings, "train.lr=1e-9")
    metrics = t2.step(samples, "decision")  # clue samples are in the list
    assert metrics.samples == len(decision)
    # the same gradient as training on the decision samples alone (checked before the step)
    t3, _ = _trainer(tiny_settings, "train.lr=1e-9")
    t3.optimizer.zero_grad()
    for micro in t3._micro_batches([s for s in samples if s.stage == "decision"]):
        t3._accumulate(micro, n_total=len(decision))
    for name, grad in _grads(t3).items():
        torch.testing.assert_close(grad, only_active[name])
    assert any(g.abs().sum() > 0 for g in only_active.values())


def test_kl_is_zero_before_the_first_step(tiny_settings, samples):
    trainer, _ = _trainer(tiny_settings, "train.kl_beta=0.04")
    metrics = trainer.step(samples, "clue")
    assert metrics.kl == pytest.approx(0.0, abs=1e-7)
    assert trainer.step(samples, "clue").kl > 0  # after a step the policy has moved away


def test_positive_advantage_completion_gains_logprob(tiny_settings, samples):
    trainer, loaded = _trainer(tiny_settings, "train.lr=1e-3", "train.warmup_ratio=0", "train.kl_beta=0")
    target = [s for s in samples if s.stage == "clue"][:2]
    target = [TrainSample(s.prompt_ids, s.completion_ids, s.images, a, "clue") for s, a in zip(target, (1.0, -1.0))]
    before, mask = _logps(trainer.model, loaded, target)
    trainer.step(target, "clue")
    after, _ = _logps(trainer.model, loaded, target)
    seq = lambda lp: (lp * mask).sum(-1)  # noqa: E731
    assert seq(after)[0] > seq(before)[0]  # advantage +1: more likely
    assert seq(after)[1] < seq(before)[1]  # advantage -1: less likely


def test_epochs_pass_over_the_samples_again_on_a_schedule_that_counts_them(tiny_settings, samples):
    trainer, _ = _trainer(tiny_settings, "train.epochs=3", "train.steps_per_iteration=2", "train.iterations=2",
                          "train.warmup_ratio=0", "train.lr=1e-3", "train.min_lr_ratio=0.4")  # fmt: skip
    metrics = trainer.step(samples, "clue")
    clue = [s for s in samples if s.stage == "clue"]
    assert {int(state["step"]) for state in trainer.optimizer.state.values()} == {6}  # 3 passes x 2 steps
    assert metrics.samples == len(clue) and metrics.tokens == sum(len(s.completion_ids) for s in clue)
    # the cosine spans iterations x steps x epochs (after the first iteration's 6 steps, halfway)
    # and ends at min_lr_ratio x lr
    assert metrics.lr == pytest.approx(1e-3 * (0.4 + 0.6 * 0.5))
    assert trainer.step(samples, "clue").lr == pytest.approx(1e-3 * 0.4)


def test_micro_batch_size_does_not_change_the_gradient(tiny_settings, samples):
    grads = []
    for size in (1, 3, 8):
        trainer, _ = _trainer(tiny_settings, f"train.micro_batch_size={size}")
        trainer.optimizer.zero_grad()
        for micro in trainer._micro_batches(samples):
            trainer._accumulate(micro, n_total=len(samples))
        grads.append(_grads(trainer))
    for other in grads[1:]:
        for name, grad in grads[0].items():
            torch.testing.assert_close(other[name], grad, atol=1e-6, rtol=1e-4)


def test_loss_math_by_hand():
    logp = torch.tensor([[-1.0, -2.0, 0.0]])
    old = torch.tensor([[-1.5, -2.0, 0.0]])  # ratio e^0.5 = 1.65 on token 0 -> clipped at 1.2
    mask = torch.tensor([[1, 1, 0]])
    parts = clipped_pg_loss(logp, old, torch.tensor([2.0]), mask, clip_eps=0.2)
    expected = -(min(1.6487 * 2, 1.2 * 2) + 1.0 * 2) / 2  # mean over the 2 real tokens
    assert float(parts.loss) == pytest.approx(expected, abs=1e-3)
    assert parts.clipped == pytest.approx(0.5) and parts.tokens == 2
    assert float(k3_kl(torch.tensor(-1.0), torch.tensor(-1.0))) == 0.0
    assert float(k3_kl(torch.tensor(-1.0), torch.tensor(-2.0))) == pytest.approx(torch.exp(torch.tensor(-1.0)).item())


def test_cosine_schedule_shape():
    values = [cosine_with_warmup(s, total=10, warmup=2) for s in range(10)]
    assert values[0] == 0.5 and values[1] == 1.0
    assert values[2] == pytest.approx(1.0) and all(a >= b for a, b in zip(values[2:], values[3:]))
    assert values[-1] < 0.1


def test_lora_trains_adapters_only_and_kl_uses_the_disabled_adapter(tiny_settings, samples):
    trainer, loaded = _trainer(tiny_settings, "train.lora.enabled=true", "train.lora.r=4", "train.kl_beta=0.04", "train.lr=1e-2")
    assert trainer.ref_model is None  # the reference is the same network with adapters off
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    first = trainer.step(samples, "clue")
    assert first.kl == pytest.approx(0.0, abs=1e-7)  # LoRA B starts at zero: policy == reference
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert trainer.step(samples, "clue").kl > 0


def test_answer_credit_weights_only_the_policy_gradient_term():
    torch.manual_seed(0)
    logp = torch.randn(2, 5, requires_grad=True)
    old, ref = logp.detach() - 0.1, logp.detach() + 0.2
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    adv = torch.tensor([1.5, -0.5])
    plain = clipped_pg_loss(logp, old, adv, mask, 0.2, ref_logp=ref, kl_beta=0.04)
    ones = clipped_pg_loss(logp, old, adv, mask, 0.2, ref_logp=ref, kl_beta=0.04, pg_weight=torch.ones(2, 5))
    assert float(ones.loss.detach()) == pytest.approx(float(plain.loss.detach()))  # weight 1 = the paper's loss
    answer = torch.tensor([[0, 0, 1, 1, 0], [0, 0, 0, 1, 1]])  # reasoning weight 0
    (grad,) = torch.autograd.grad(clipped_pg_loss(logp, old, adv, mask, 0.2, pg_weight=answer).loss, logp)
    assert torch.all(grad[answer == 0] == 0) and torch.all(grad[(answer == 1) & (mask == 1)] != 0)
    # each answer token carries the whole advantage: 1/2 of it per token, not 1/4 or 1/5
    ratio = torch.exp(logp.detach() - old)
    assert float(grad[0, 2]) == pytest.approx(-float(adv[0] * ratio[0, 2]) / 2, rel=1e-5)
    (with_kl,) = torch.autograd.grad(clipped_pg_loss(logp, old, adv, mask, 0.2, ref_logp=ref, kl_beta=0.5, pg_weight=answer).loss, logp)
    assert torch.all(with_kl[(answer == 0) & (mask == 1)] != 0)  # the KL still holds the reasoning


def test_answer_mask_starts_at_the_first_box_content(tiny_model):
    from visionzero.train.batch import answer_start

    tok = tiny_model.tokenizer
    ids = tok("Player 1: red no. \\boxed{1} then \\boxed{2}", add_special_tokens=False)["input_ids"]
    answer = tok.decode(ids[answer_start(ids, tok):]).strip()
    assert answer.startswith("1") and answer.endswith("\\boxed{2}")  # the parsed vote on, not its opener
    assert answer_start(tok("no box at all", add_special_tokens=False)["input_ids"], tok) == 0
    # the base stage's summary phase weights from its summary line on
    ids = tok("Player 1: red no. Odd: 1. \\boxed{2}", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids[answer_start(ids, tok, "Odd:"):]).strip().startswith("1.")


def test_anchors_add_only_the_kl_of_the_other_stage(tiny_settings, samples):
    decision = [s for s in samples if s.stage == "decision"]
    clue = [s for s in samples if s.stage == "clue"]

    def grads_after_a_first_step(*overrides, anchors=()):
        trainer, _ = _trainer(tiny_settings, "train.lr=1e-2", "train.kl_beta=0.5", *overrides)
        torch.manual_seed(0)
        trainer.step(decision, "decision")  # move away from the reference: KL > 0
        trainer.optimizer.zero_grad()
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        metrics = trainer.step(decision, "decision", anchors)
        moved = {n: p.detach() - before[n] for n, p in trainer.model.named_parameters()}
        return metrics, moved

    plain, moved = grads_after_a_first_step()
    anchored, moved_anchored = grads_after_a_first_step(anchors=clue)
    assert plain.anchors == 0 and anchored.anchors == len(clue) and anchored.samples == plain.samples
    assert any(not torch.equal(moved[n], moved_anchored[n]) for n in moved)  # the clue KL pulled too
    # with advantage 0 the anchors carry no policy gradient: whatever their advantage was
    flipped = [TrainSample(s.prompt_ids, s.completion_ids, s.images, -5.0 * s.advantage, s.stage) for s in clue]
    _, moved_flipped = grads_after_a_first_step(anchors=flipped)
    for n in moved:
        torch.testing.assert_close(moved_flipped[n], moved_anchored[n])
    none, _ = grads_after_a_first_step("train.kl_beta=0", anchors=clue)
    assert none.anchors == 0  # nothing to anchor without a KL term or a keep


def _move_away(trainer) -> None:
    """Perturb the policy so that it differs from the frozen start model (a nonzero KL)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.02 * torch.randn_like(p))


def _keep_grads_by_hand(trainer, loaded, sample, weight: float, skip: int | None = None, only: int | None = None) -> dict:
    """Gradients of weight * the mean over the completion's tokens (but `skip`, or `only` that
    one) of the exact KL(start || policy), computed here without the trainer's masks."""
    trainer.optimizer.zero_grad()
    batch = collate([sample], loaded.processor, loaded.tokenizer.pad_token_id, "cpu")
    logits = completion_logits(trainer.model, batch)
    with torch.no_grad():
        ref = completion_logits(trainer.ref_model, batch)
    logp, ref_logp = torch.log_softmax(logits, -1)[0], torch.log_softmax(ref, -1)[0]
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    if skip is not None:
        kl = torch.cat([kl[:skip], kl[skip + 1 :]])
    if only is not None:
        kl = kl[only : only + 1]
    (weight * kl.mean()).backward()
    return _grads(trainer)


def _gradient_added_by(tiny_settings, sample, key: str, weight: float):
    """The gradient of one decision sample (expected vote, no KL, credit on the answer) with
    `key`=weight minus with `key`=0, once the policy has moved; and the trainer with it."""
    grads = {}
    for w in (0.0, weight):
        trainer, loaded = _trainer(tiny_settings, "train.kl_beta=0", "train.vote_gradient=expected",
                                   "train.reasoning_weight=0.0", f"{key}={w}")
        _move_away(trainer)
        trainer.optimizer.zero_grad()
        trainer._accumulate([sample], n_total=1)
        grads[w] = _grads(trainer)
    return {n: g - grads[0.0].get(n, 0 * g) for n, g in grads[weight].items()}, trainer, loaded


def test_an_anchored_vote_takes_no_expected_reward_gradient(tiny_settings, tiny_model, samples):
    """In the clue stage the votes are anchors: with vote_gradient=expected they add the KL
    alone, whose gradient is zero while the policy is the start model; the vote's expected
    reward (from its choice rewards, not its advantage) must not train it."""
    base = next(s for s in samples if s.stage == "decision")
    completion = tiny_model.tokenizer("Player 1: red no. \\boxed{1}", add_special_tokens=False)["input_ids"] + [tiny_model.end_of_turn_id]
    vote = TrainSample(base.prompt_ids, completion, base.images, 0.0, "decision", choice_rewards=[1.0, -1.0, -1.0, -1.0, -1.0])
    trainer, _ = _trainer(tiny_settings, "train.vote_gradient=expected", "train.reasoning_weight=0.0", "train.kl_beta=0.5")
    trainer.optimizer.zero_grad()
    trainer._accumulate([vote], n_total=1, anchor=True)
    held = _grads(trainer)
    assert held and all(float(g.abs().max()) == 0.0 for g in held.values())
    trainer._accumulate([vote], n_total=1)  # the same vote, trained: its expected reward moves it
    assert any(float(g.abs().max()) > 0.0 for g in _grads(trainer).values())


@pytest.mark.parametrize(
    "text, stage, anchor",
    [("I see a red cube. \\boxed{There is a red cube.}", "clue", True),  # an anchor, box included
     ("Player 1: red no. Player 2: red yes. Player 3: red", "decision", False)],  # no box: all reasoning
)  # fmt: skip
def test_the_keep_holds_anchors_and_boxless_completions_whole(tiny_settings, tiny_model, samples, text, stage, anchor):
    """train.reasoning_keep without the KL: an anchor (the other stage's completion; the votes'
    gradient had rewritten the clues' boxes into seat digits) and a completion that never
    wrote its box (an observer that stopped closing its checks) add keep * KL(start || policy)
    over every token of their completion. Checked by hand."""
    tok = tiny_model.tokenizer
    base = next(s for s in samples if s.stage == stage)
    completion = tok(text, add_special_tokens=False)["input_ids"]
    choices = [-1.0, 1.0, -1.0, -1.0, -1.0] if stage == "decision" else None
    sample = TrainSample(base.prompt_ids, completion, base.images, 0.0, stage, choice_rewards=choices)  # advantage 0 as step() passes anchors
    trainer, loaded = _trainer(tiny_settings, "train.kl_beta=0", "train.reasoning_keep=3.0", "train.reasoning_weight=0.0",
                               "train.vote_gradient=expected")
    _move_away(trainer)
    trainer.optimizer.zero_grad()
    trainer._accumulate([sample], n_total=1, anchor=anchor)
    held = _grads(trainer)
    for name, grad in _keep_grads_by_hand(trainer, loaded, sample, 3.0).items():
        torch.testing.assert_close(held[name], grad, atol=1e-5, rtol=1e-3)
    if anchor:
        metrics = trainer.step([s for s in samples if s.stage == "decision"], "decision", [sample])
        assert metrics.anchors == 1  # the keep alone brings the anchors in


def test_expected_vote_loss_is_minus_the_expected_reward():
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.5, -1.0]], requires_grad=True)  # vocab of 5
    seats = torch.tensor([1, 2, 3])  # seat k's digit is token k
    rewards = torch.tensor([[-1.0, 1.0, -1.0, -0.5]])  # spy in seat 2; any other token -0.5
    loss = expected_vote_loss(logits, seats, rewards)
    p = torch.softmax(logits.detach(), -1)[0]
    expected = p[1] * -1 + p[2] * 1 + p[3] * -1 + (1 - p[1] - p[2] - p[3]) * -0.5
    assert float(loss.detach()) == pytest.approx(-(float(expected) + 0.5), abs=1e-6)  # up to the constant r_other
    loss.sum().backward()
    assert logits.grad[0, 2] < 0 and logits.grad[0, 1] > 0 and logits.grad[0, 3] > 0  # toward the spy's digit


def test_expected_vote_gradient_moves_toward_the_spy_even_from_a_wrong_sample(tiny_settings, tiny_model, samples):
    """Sampled (GRPO): a wrong vote with a negative advantage only pushes its own seat down.
    Expected: every seat's verifiable reward is used, so the spy's digit gains, whichever was sampled."""
    tok = tiny_model.tokenizer
    base = samples[0]
    completion = tok("Player 1: red no. \\boxed{1}", add_special_tokens=False)["input_ids"] + [tiny_model.end_of_turn_id]
    wrong = TrainSample(base.prompt_ids, completion, base.images, -1.0, "decision", choice_rewards=[-1.0, -1.0, 1.0, -1.0, -1.0])
    three = tok("3", add_special_tokens=False)["input_ids"][0]
    from visionzero.train.batch import answer_start

    at = answer_start(completion, tok)
    assert tok.decode(completion[at:]).startswith("1")

    def p_spy(trainer, loaded):
        batch = collate([wrong], loaded.processor, loaded.tokenizer.pad_token_id, "cpu")
        with torch.no_grad():
            return float(torch.softmax(completion_logits(trainer.model, batch)[0, at], -1)[three])

    moves = {}
    for mode in ("sampled", "expected"):
        trainer, loaded = _trainer(tiny_settings, "train.lr=3e-3", "train.warmup_ratio=0", "train.kl_beta=0",
                                   f"train.vote_gradient={mode}", "train.reasoning_weight=0.0")
        before = p_spy(trainer, loaded)
        for _ in range(5):
            trainer.step([wrong], "decision")
        moves[mode] = p_spy(trainer, loaded) - before
    assert moves["expected"] > 0.05  # the spy's seat becomes likelier
    assert moves["expected"] > moves["sampled"] + 0.05




def test_reasoning_keep_pulls_only_the_reasoning_back_to_the_start_model(tiny_settings, tiny_model, samples):
    """train.reasoning_keep adds keep * KL(start || policy) over the vocabulary at every token
    the policy gradient does not train: for a vote taken in expectation, all but its digit
    (the reasoning, and the "}" and end of turn after the digit): once the policy has moved,
    the gradient with it minus the gradient without it is exactly that term's gradient,
    computed here by hand; the reference is the frozen start model."""
    tok = tiny_model.tokenizer
    base = samples[0]
    completion = tok("Player 1: red no. Player 2: red yes. \\boxed{1}", add_special_tokens=False)["input_ids"]
    completion += [tiny_model.end_of_turn_id]
    sample = TrainSample(base.prompt_ids, completion, base.images, 0.5, "decision", choice_rewards=[-1.0, -1.0, 1.0, -1.0, -1.0])
    from visionzero.train.batch import answer_start

    at = answer_start(completion, tok)
    assert 0 < at < len(completion) - 1
    added, trainer, loaded = _gradient_added_by(tiny_settings, sample, "train.reasoning_keep", 2.0)
    assert (trainer.ref_model is not None) and all(not p.requires_grad for p in trainer.ref_model.parameters())
    by_hand = _keep_grads_by_hand(trainer, loaded, sample, 2.0, skip=at)
    assert float(by_hand["model.language_model.layers.0.self_attn.q_proj.weight"].norm()) > 0
    for name, grad in by_hand.items():
        torch.testing.assert_close(added[name], grad, atol=1e-5, rtol=1e-3)


def test_vote_keep_pulls_the_digit_back_by_p_minus_ref(tiny_settings, tiny_model, samples):
    """train.vote_keep adds keep * KL(start || policy) at the vote's digit alone (with the
    expected vote gradient), so its gradient on each seat's logit is p_k - ref_k, whatever p_k:
    the gradient with it minus without it is that term's, by hand; it needs the expected gradient."""
    tok = tiny_model.tokenizer
    base = samples[0]
    completion = tok("Player 1: red no. \\boxed{1}", add_special_tokens=False)["input_ids"] + [tiny_model.end_of_turn_id]
    sample = TrainSample(base.prompt_ids, completion, base.images, 0.5, "decision", choice_rewards=[1.0, -1.0, -1.0, -1.0, -1.0])
    from visionzero.train.batch import answer_start

    at = answer_start(completion, tok)
    added, trainer, loaded = _gradient_added_by(tiny_settings, sample, "train.vote_keep", 1.5)
    for name, grad in _keep_grads_by_hand(trainer, loaded, sample, 1.5, only=at).items():
        torch.testing.assert_close(added[name], grad, atol=1e-5, rtol=1e-3)
    with pytest.raises(ValueError, match="vote_gradient=expected"):
        load_settings(None, ["train.vote_keep=0.1"])


@pytest.mark.parametrize("n", [2, 3, 8])
def test_every_step_sees_every_game_unless_groups_are_kept_whole(n):
    """step_mix=games: each optimizer step holds a share of every game's group (so no step is
    dominated by two games' spies); groups: contiguous slices. Both use each sample once."""
    from visionzero.train.update import step_slices

    games = [TrainSample([g], [1, g], ["x"], 0.0, "decision") for g in range(6) for _ in range(8)]
    clues = [TrainSample([100 + i], [1], ["x"], 0.0, "clue") for i in range(5)]  # one completion per prompt
    samples = games + clues
    for mix in ("games", "groups"):
        steps = step_slices(samples, n, mix)
        assert sorted(id(s) for step in steps for s in step) == sorted(id(s) for s in samples)
        assert max(map(len, steps)) - min(map(len, steps)) <= 2
        seen = [{s.prompt_ids[0] for s in step if s.prompt_ids[0] < 100} for step in steps]
        if mix == "games":
            assert all(games_seen == set(range(6)) for games_seen in seen)
        else:
            assert sum(len(g) for g in seen) < 6 + 2 * n  # a game is split at most at a slice border


def test_share_of_draws_that_share_in_order_from_its_seed():
    items = list(range(40))
    assert share_of(items, 1.0, seed=3) == items
    quarter = share_of(items, 0.25, seed=3)
    assert len(quarter) == 10 and quarter == sorted(quarter) and set(quarter) <= set(items)
    assert share_of(items, 0.25, seed=3) == quarter  # the iteration's seed fixes it (resume)
    assert share_of(items, 0.25, seed=4) != quarter
    assert share_of(items[:2], 0.1, seed=0) in ([0], [1])  # never empty while there are turns
    assert share_of([], 0.5, seed=0) == []


def test_the_reported_loss_includes_the_expected_vote_term(tiny_settings, tiny_model, samples):
    """With the vote taken in expectation and no credit on the reasoning, the clipped term is
    zero: the logged loss must be the expected vote's, -sum_k p_k (r_k - r_other)."""
    base = next(s for s in samples if s.stage == "decision")
    completion = tiny_model.tokenizer("Player 1: red no. \\boxed{1}", add_special_tokens=False)["input_ids"] + [tiny_model.end_of_turn_id]
    rewards = [1.0, -1.0, -1.0, -1.0, -1.0]
    vote = TrainSample(base.prompt_ids, completion, base.images, 0.5, "decision", choice_rewards=rewards)
    trainer, loaded = _trainer(tiny_settings, "train.vote_gradient=expected", "train.reasoning_weight=0.0", "train.kl_beta=0")
    batch = collate([vote], loaded.processor, loaded.tokenizer.pad_token_id, "cpu", with_answer_mask=True)
    with torch.no_grad():
        logits = completion_logits(trainer.model, batch)[0]
    at = int(batch.answer_mask[0].argmax())  # the vote's digit
    by_hand = float(expected_vote_loss(logits[at : at + 1], torch.tensor(seat_token_ids(loaded.tokenizer, 4)), torch.tensor([rewards])))
    assert by_hand < 0  # -2 p(seat 1): the spy's gain over "anything else" is 2, the others' 0
    assert trainer.step([vote], "decision").loss == pytest.approx(by_hand, rel=1e-4)


def test_vote_std_divides_the_vote_gradient_by_the_rewards_std_under_the_policy(tiny_settings, tiny_model, samples):
    """train.vote_std: the expected vote's gradient, divided by the standard deviation of the
    vote's reward when the seat is drawn from the policy (GRPO's normalisation in expectation)."""
    base = next(s for s in samples if s.stage == "decision")
    completion = tiny_model.tokenizer("Player 2: red no. \\boxed{2}", add_special_tokens=False)["input_ids"] + [tiny_model.end_of_turn_id]
    rewards = [-1.0, 1.0, -1.0, -1.0, -0.5]  # the spy in seat 2; anything but a seat -0.5
    vote = TrainSample(base.prompt_ids, completion, base.images, 0.0, "decision", choice_rewards=rewards)
    grads = {}
    for std in ("false", "true"):
        trainer, loaded = _trainer(tiny_settings, "train.vote_gradient=expected", "train.reasoning_weight=0.0",
                                   "train.kl_beta=0", f"train.vote_std={std}")
        trainer.optimizer.zero_grad()
        trainer._accumulate([vote], n_total=1)
        grads[std] = _grads(trainer)
    batch = collate([vote], loaded.processor, loaded.tokenizer.pad_token_id, "cpu", with_answer_mask=True)
    with torch.no_grad():
        logits = completion_logits(trainer.model, batch)[0]
    probs = torch.softmax(logits[int(batch.answer_mask[0].argmax())], -1)
    p = [float(probs[i]) for i in seat_token_ids(loaded.tokenizer, 4)]
    outcomes = [*zip(p, rewards[:4]), (1 - sum(p), rewards[4])]  # each seat, then everything else
    mean = sum(q * r for q, r in outcomes)
    std = sum(q * (r - mean) ** 2 for q, r in outcomes) ** 0.5
    assert 0 < std < 1
    assert any(float(g.abs().max()) > 0 for g in grads["false"].values())
    for name, grad in grads["false"].items():
        torch.testing.assert_close(grads["true"][name], grad / (std + 1e-4), atol=1e-6, rtol=1e-3)
    with pytest.raises(ValueError, match="vote_gradient=expected"):
        load_settings(None, ["train.vote_std=true"])
