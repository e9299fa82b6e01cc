"""The vote-copy diagnostic (docs/learning.md): can a model learn "vote = the seat my own
checks flag", and how fast, by supervision or by a policy gradient on the vote alone?

Diagnostic only, never a training path of the project: it uses the games' true spy seats
and its own reading of the reasoning. Input: games played by the model under test
(`vision-zero play --games 480 --out DIR`); every observer sample whose reasoning flags
exactly one seat ("Player k: <colour> no.") becomes a row (reasoning up to `\\boxed{`, the
flagged seat, the spy). 300 rows are held out; on them the test reads the model's
distribution over the seat digits after `\\boxed{` and reports p(flagged seat), p(spy) and
the argmax's agreement with each. Training runs on the other rows, 16 per step (--rows), AdamW:

  supervised   cross-entropy on the flagged seat's digit (the copy, with true targets)
  sampled      REINFORCE on the digit: a seat sampled at --temperature, reward +1 for the
               spy else -1, minus the batch mean (what GRPO's vote term does)
  expected     the exact gradient of the expected reward over all seats: -2 p(spy)
               (train.vote_gradient=expected)

Options that mirror the loop: --keep w adds w * the NLL of the rows' own (the base's)
reasoning; --games-per-step k draws each step's rows from k games (the loop's steps held
whole groups: 2 games of 8 votes); --balanced takes as many rows of every spy seat a step
(train.balanced_seats); --block-steps k trains k steps in a row on one block of 16 games, one
vote of each a step (an iteration's structure); --freeze embeddings keeps the tied embeddings
fixed. With --model CKPT/model --steps 0 it is the probe of a checkpoint's copy. The
held-out `reasoning_nll` (the model's NLL of the base's reasoning) shows what the vote's
update does to the reasoning.

    python scripts/vote_diagnostic.py --games runs/play/games.jsonl --mode sampled --lr 3e-4
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections import Counter

import torch

from visionzero.base.stage import starting_spec
from visionzero.models import load_model
from visionzero.settings import load_settings
from visionzero.train.batch import collate
from visionzero.train.samples import TrainSample
from visionzero.train.update import cosine_with_warmup, seat_token_ids

CHECK = re.compile(r"Player\s*(\d)\s*:\s*([a-z]+)\s+(yes|no)")


def rows_from_games(path: str, tok, every_vote: bool = False) -> list[dict]:
    """Rows of the votes whose reasoning flags exactly one seat (flag = that seat); with
    `every_vote`, also the others (flag None), as the loop trains on them."""
    rows = []
    for line in open(path):
        g = json.loads(line)
        for t in g["turns"]:
            if t["stage"] != "decision":
                continue
            reasoning = t["text"].split("\\boxed")[0]
            flagged = {int(s) for s, _, verdict in CHECK.findall(reasoning) if verdict == "no"}
            if len(flagged) == 1 or every_vote:
                prefix = tok(reasoning.rstrip() + " \\boxed{", add_special_tokens=False)["input_ids"]
                flag = flagged.pop() if len(flagged) == 1 else None
                rows.append({"prompt": t["prompt_ids"], "prefix": prefix, "flag": flag, "spy": g["spy_seat"], "image": t["image"],
                             "game": g["game_id"]})
    return rows


def digit_logits(model, rows, loaded, digits) -> torch.Tensor:
    """[len(rows), n_seats] logits of the seat digits right after each row's `\\boxed{`."""
    samples = [TrainSample(r["prompt"], r["prefix"], [r["image"]], 0.0, "decision") for r in rows]
    batch = collate(samples, loaded.processor, loaded.tokenizer.pad_token_id, "cpu")
    logits = model(**batch.inputs, use_cache=False).logits
    P = batch.inputs["input_ids"].shape[1] - batch.completion_ids.shape[1]
    last = torch.tensor([P + len(r["prefix"]) - 1 for r in rows])
    return logits[torch.arange(len(rows)), last][:, digits]


def reasoning_nll(model, rows, loaded) -> torch.Tensor:
    """Mean negative log-likelihood of the rows' own reasoning tokens: how far the update
    moved the model away from the reasoning it wrote (its free generation's health)."""
    samples = [TrainSample(r["prompt"], r["prefix"], [r["image"]], 0.0, "decision") for r in rows]
    batch = collate(samples, loaded.processor, loaded.tokenizer.pad_token_id, "cpu")
    logits = model(**batch.inputs, use_cache=False).logits
    C = batch.completion_ids.shape[1]
    logp = torch.log_softmax(logits[:, -C - 1 : -1], -1).gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1)
    mask = batch.completion_mask.float()
    return -(logp * mask).sum() / mask.sum()


@torch.no_grad()
def heldout(model, rows, loaded, digits, temperature) -> dict[str, float]:
    model.eval()
    out = {"p_flag": 0.0, "p_spy": 0.0, "argmax_flag": 0.0, "argmax_spy": 0.0, "reasoning_nll": 0.0}
    for i in range(0, len(rows), 16):
        part = rows[i : i + 16]
        out["reasoning_nll"] += float(reasoning_nll(model, part, loaded)) * len(part)
        p = torch.softmax(digit_logits(model, part, loaded, digits) / temperature, -1)
        for r, pr in zip(part, p):
            out["p_flag"] += float(pr[r["flag"] - 1])
            out["p_spy"] += float(pr[r["spy"] - 1])
            out["argmax_flag"] += int(pr.argmax()) + 1 == r["flag"]
            out["argmax_spy"] += int(pr.argmax()) + 1 == r["spy"]
    model.train()
    return {k: v / len(rows) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--games", required=True, help="games.jsonl of the model under test (vision-zero play)")
    ap.add_argument("--model", default=None, help="model folder (default: the starting model of params.yaml)")
    ap.add_argument("--mode", choices=["supervised", "sampled", "expected"], default="sampled")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--games-per-step", type=int, default=0, help="draw each step's 16 rows from this many games (the loop's steps hold whole groups: 2 games of 8 votes); 0 = 16 rows from anywhere")
    ap.add_argument("--block-steps", type=int, default=0, help="as the loop does: take 16 games (4 spies a seat) and train --block-steps steps on them, one vote of each game a step, before taking the next 16")
    ap.add_argument("--split", choices=["games", "rows"], default="games", help="hold out whole games (default) or rows (the first version: a test row's game is trained on through its other votes)")
    ap.add_argument("--cosine", action="store_true", help="decay the lr to 0 over --steps by a cosine (the loop's schedule) instead of holding it")
    ap.add_argument("--rows", type=int, default=16, help="rows per step (a multiple of the seats with --balanced)")
    ap.add_argument("--balanced", action="store_true", help="draw each step's rows with the same number of spies in every seat (no seat-marginal push)")
    ap.add_argument("--every-vote", action="store_true", help="also train on the votes whose reasoning flags no single seat (the loop's other half)")
    ap.add_argument("--keep", type=float, default=0.0, help="weight of the NLL of the rows' own reasoning added to the loss (keeps the reasoning while the vote learns)")
    ap.add_argument("--freeze", choices=["none", "embeddings"], default="none", help="embeddings: keep the (tied) token embeddings fixed")
    ap.add_argument("--set", nargs="*", default=[], help="settings overrides")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    s = load_settings("params.yaml", a.set)
    loaded = load_model(s.model, s.runtime, spec=a.model or starting_spec(s))
    tok, model = loaded.tokenizer, loaded.model
    digits = seat_token_ids(tok, s.game.n_players)
    if a.every_vote and a.mode == "supervised":
        ap.error("--every-vote trains on votes with no flagged seat: use --mode expected or sampled")
    rows = rows_from_games(a.games, tok, a.every_vote)
    flagged = [r for r in rows if r["flag"] is not None]
    if a.split == "games":  # held-out games: no row of a test game is trained on (a game's spy could be memorised)
        flags_of = Counter(r["game"] for r in flagged)
        games = sorted({r["game"] for r in rows})
        random.Random(a.seed).shuffle(games)
        test_games, n = set(), 0
        for gid in games:
            if n >= 300:
                break
            test_games.add(gid)
            n += flags_of[gid]
        test = [r for r in flagged if r["game"] in test_games][:300]
        train = [r for r in rows if r["game"] not in test_games and (r["flag"] is not None or a.every_vote)]
    else:  # rows: the first version's split, test rows share their games with trained rows
        random.Random(a.seed).shuffle(flagged)
        test = flagged[:300]  # always measured on single-flag votes
        train = flagged[300:] + [r for r in rows if r["flag"] is None]
    print(f"{len(flagged)} single-flag votes of {len(rows)} rows; the flagged seat is the spy in "
          f"{sum(r['flag'] == r['spy'] for r in flagged) / len(flagged):.3f}")
    print("step 0: " + ", ".join(f"{k} {v:.3f}" for k, v in heldout(model, test, loaded, digits, a.temperature).items()), flush=True)
    by_game: dict = {}
    for r in train:
        by_game.setdefault(r["game"], []).append(r)
    by_spy: dict = {}
    for r in train:
        by_spy.setdefault(r["spy"], []).append(r)
    by_spy_game = {k: sorted({r["game"] for r in mine}) for k, mine in by_spy.items()}
    per_seat = a.rows // s.game.n_players  # a balanced step's rows (or games) of each spy seat
    if a.freeze == "embeddings":
        model.get_input_embeddings().weight.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: cosine_with_warmup(k, a.steps, 0) if a.cosine else 1.0)
    rng, start = random.Random(a.seed + 1), time.perf_counter()
    model.train()
    for step in range(1, a.steps + 1):
        if a.block_steps:
            if (step - 1) % a.block_steps == 0:
                block = [gid for k in range(1, s.game.n_players + 1) for gid in rng.sample(by_spy_game[k], per_seat)]
            batch = [rng.choice(by_game[gid]) for gid in block]
        elif a.games_per_step:
            chosen = rng.sample(sorted(by_game), a.games_per_step)
            batch = [r for gid in chosen for r in rng.sample(by_game[gid], min(len(by_game[gid]), a.rows // a.games_per_step))]
        elif a.balanced:
            batch = [r for k in range(1, s.game.n_players + 1) for r in rng.sample(by_spy[k], per_seat)]
        else:
            batch = rng.sample(train, a.rows)
        logp = torch.log_softmax(digit_logits(model, batch, loaded, digits) / a.temperature, -1)
        spy = torch.tensor([r["spy"] - 1 for r in batch])
        idx = torch.arange(len(batch))
        if a.mode == "supervised":
            flag = torch.tensor([r["flag"] - 1 for r in batch])
            loss = -logp[idx, flag].mean()
        elif a.mode == "sampled":
            k = torch.multinomial(logp.exp().detach(), 1).squeeze(1)
            reward = (k == spy).float() * 2 - 1
            loss = -((reward - reward.mean()) * logp[idx, k]).mean()
        else:
            loss = -(2 * logp.exp()[idx, spy]).mean()
        if a.keep:
            loss = loss + a.keep * reasoning_nll(model, batch, loaded)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0:
            m = heldout(model, test, loaded, digits, a.temperature)
            print(f"step {step} ({time.perf_counter() - start:.0f} s): " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()), flush=True)


if __name__ == "__main__":
    main()
