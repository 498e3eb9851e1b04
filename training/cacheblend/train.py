"""Train the CacheBlend event-log model on CPU within a wall-clock budget (checkpoints as it goes).

  nice -n 19 /usr/bin/python3 training/cacheblend/train.py --minutes 50 --out training/cacheblend/run

Data are generated on the fly (eventlog.py) from the training cameras and training phrasings; the learning rate
follows a cosine over the time budget, so a run that is cut short still ends annealed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from eventlog import TRAIN_CAMERAS, TRAIN_TEMPLATES, make_example, prompt_text, tokenize, vocabulary  # noqa: E402
from model import LM, Config  # noqa: E402


def encode(ex: dict, vocab: dict[str, int], text_weight: float = 0.2) -> tuple[list[int], list[float]]:
    """Context + one or more question/answer pairs; loss weight 1 on answers (+<eos>), text_weight elsewhere."""
    qs = ex["questions"]
    text = prompt_text(ex["chunks"], qs[0]["question"])
    toks = tokenize(text, vocab)
    w = [text_weight] * len(toks)
    for i, q in enumerate(qs):
        if i > 0:
            more = tokenize(f"question : {q['question']} answer :", vocab)
            toks += more
            w += [text_weight] * len(more)
        ans = tokenize(q["answer"], vocab) + [vocab["<eos>"]]
        toks += ans
        w += [1.0] * len(ans)
    return toks, w


SMALL = (2, 3, 1, 2)  # cameras min/max, windows min/max: short contexts, dense answer signal
LARGE = (3, 6, 2, 3)  # up to the evaluation's context lengths


def batch(rng: random.Random, vocab, n: int, cameras, templates, size=LARGE, max_questions: int = 4, text_weight: float = 0.2,
          min_cams: int = 2, repeat: float = 0.0):
    """n examples, each a context followed by 2..max_questions questions, padded into one tensor. With probability
    `repeat` a context lists its chunks twice (the second copy is predictable only by copying: induction signal)."""
    seqs = []
    while len(seqs) < n:
        ex = make_example(rng, cameras, templates, rng.randint(2, max_questions), size, min_cams)
        if ex and repeat > 0 and rng.random() < repeat:
            ex["chunks"] = ex["chunks"] * 2
        if ex:
            seqs.append(encode(ex, vocab, text_weight))
    T = max(len(t) for t, _ in seqs)
    x = torch.zeros(n, T, dtype=torch.long)
    w = torch.zeros(n, T)
    for i, (t, ww) in enumerate(seqs):
        x[i, : len(t)] = torch.tensor(t)
        w[i, : len(ww)] = torch.tensor(ww)
    return x, w


def loss_fn(model, x, w):
    logits = model(x[:, :-1])
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none").view(x.shape[0], -1)
    tw = w[:, 1:]
    return (ce * tw).sum() / tw.sum(), logits


def easy_share(frac: float, easy_frac: float, ramp_frac: float) -> float:
    """Curriculum: the share of steps on easy batches at this point of the budget (1 during the easy stage, then
    falling linearly to 0 over the ramp; 0 without a curriculum)."""
    if frac < easy_frac:
        return 1.0
    if ramp_frac > 0 and frac < easy_frac + ramp_frac:
        return 1.0 - (frac - easy_frac) / ramp_frac
    return 0.0


def parse_size(s: str) -> tuple[int, int, int, int]:
    v = tuple(int(x) for x in s.split(","))
    if len(v) != 4 or v[0] < 2 or v[0] > v[1] or v[2] < 1 or v[2] > v[3]:
        raise argparse.ArgumentTypeError("size: min cameras (>= 2), max cameras, min windows (>= 1), max windows")
    return v  # type: ignore[return-value]


def dev_eval(model, dev):
    """Teacher-forced answer metrics on a fixed dev set (training cameras, another seed)."""
    model.eval()
    tot, em, aloss = 0, 0, 0.0
    with torch.no_grad():
        for x, w in dev:
            logits = model(x[:, :-1])
            pred = logits.argmax(-1)
            tgt = x[:, 1:]
            ans = w[:, 1:] == 1.0
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none").view(tgt.shape)
            aloss += float((ce * ans).sum() / ans.sum())
            # exact match per sequence: every answer token right
            ok = ((pred == tgt) | ~ans).all(dim=1)
            em += int(ok.sum())
            tot += x.shape[0]
    model.train()
    return {"answer_loss": aloss / len(dev), "answer_em_teacher_forced": em / tot}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=55)
    ap.add_argument("--out", default="training/cacheblend/run")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--ckpt-every-min", type=float, default=8)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--small-frac", type=float, default=0.6, help="share of steps on short contexts (2x the batch)")
    ap.add_argument("--text-weight", type=float, default=0.2, help="loss weight of log/question tokens (answers: 1)")
    ap.add_argument("--max-questions", type=int, default=4, help="questions asked after each context (2..N)")
    # curriculum (off by default): easy batches first, i.e. short contexts whose questions may also be about a class
    # only one camera saw (the answer copied from one chunk), so that retrieval forms before the two-chunk questions
    ap.add_argument("--easy-frac", type=float, default=0.0, help="share of the budget on easy batches only")
    ap.add_argument("--ramp-frac", type=float, default=0.0, help="then this share mixing easy batches in, linearly fewer")
    ap.add_argument("--easy-size", type=parse_size, default=(2, 3, 1, 1), help="easy scene: cameras min,max, windows min,max")
    ap.add_argument("--easy-batch", type=int, default=8, help="contexts per easy batch")
    ap.add_argument("--easy-repeat", type=float, default=0.0, help="share of easy contexts whose chunks are listed twice")
    ap.add_argument("--init", default="", help="start from this checkpoint's weights (e.g. a pilot's), not from random")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    words = vocabulary()
    vocab = {w: i for i, w in enumerate(words)}
    cfg = Config(vocab=len(words), layers=a.layers, ffn=a.ffn)
    model = LM(cfg)
    if a.init:
        ck = torch.load(a.init)
        if ck["config"] != cfg.to_json():
            raise SystemExit(f"--init {a.init}: config {ck['config']} differs from {cfg.to_json()}")
        model.load_state_dict(ck["state"])
        print(f"init from {a.init} (step {ck.get('step')})", flush=True)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"params {nparams}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.05)
    rng = random.Random(1000 + a.seed)
    dev_rng = random.Random(7)
    dev = [batch(dev_rng, vocab, 8, TRAIN_CAMERAS, TRAIN_TEMPLATES)]  # defaults: the same dev set whatever the options
    curriculum = a.easy_frac > 0 or a.ramp_frac > 0
    # easy dev set (only logged with a curriculum): easy-stage scenes and questions, training cameras, its own seed
    dev_easy = [batch(random.Random(8), vocab, 16, TRAIN_CAMERAS, TRAIN_TEMPLATES, a.easy_size, min_cams=1)] if curriculum else []
    budget = a.minutes * 60

    def checkpoint(label: str, **extra) -> None:
        """Dev metrics into the log (easy dev set too with a curriculum), and the weights to ckpt.pt."""
        d = dev_eval(model, dev)
        if dev_easy:
            d.update({f"easy_{k}": v for k, v in dev_eval(model, dev_easy).items()})
        entry = {"step": step, "seconds": round(time.time() - t0), "tokens": tokens, **extra, **d}
        log.append(entry)
        print(label, entry, flush=True)
        torch.save({"config": cfg.to_json(), "state": model.state_dict(), "step": step}, os.path.join(a.out, "ckpt.pt"))

    t0 = time.time()
    last_ckpt = t0
    step, tokens = 0, 0
    log = []
    warm = 20
    while True:
        el = time.time() - t0
        frac = el / budget
        if frac >= 1 or (a.max_steps and step >= a.max_steps):
            break
        lr = a.lr * min(1.0, (step + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        share = easy_share(frac, a.easy_frac, a.ramp_frac) if curriculum else 0.0
        if share > 0 and (share >= 1 or rng.random() < share):
            x, w = batch(rng, vocab, a.easy_batch, TRAIN_CAMERAS, TRAIN_TEMPLATES, a.easy_size, a.max_questions, a.text_weight,
                         min_cams=1, repeat=a.easy_repeat)
        else:
            small = rng.random() < a.small_frac
            x, w = batch(rng, vocab, a.batch * 2 if small else a.batch, TRAIN_CAMERAS, TRAIN_TEMPLATES,
                         SMALL if small else LARGE, a.max_questions, a.text_weight)
        loss, _ = loss_fn(model, x, w)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += int((w > 0).sum())
        if step % 25 == 0:
            print(f"step {step} {el:.0f}s loss {loss.item():.4f} lr {lr:.2e} tok/s {tokens / (time.time() - t0):.0f}", flush=True)
        if time.time() - last_ckpt > a.ckpt_every_min * 60:
            last_ckpt = time.time()
            checkpoint("dev", loss=loss.item())
    checkpoint("final")
    with open(os.path.join(a.out, "train_log.json"), "w") as f:
        json.dump({"config": cfg.to_json(), "params": nparams, "args": vars(a), "log": log,
                   "wall_seconds": round(time.time() - t0), "steps": step, "tokens": tokens}, f, indent=1)


if __name__ == "__main__":
    main()
