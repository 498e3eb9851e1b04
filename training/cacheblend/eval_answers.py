"""Greedy answers of a training checkpoint on the held-out questions (PyTorch, full prefill), token F1 and EM.

  nice -n 19 /usr/bin/python3 training/cacheblend/eval_answers.py --ckpt training/cacheblend/run/ckpt.pt --n 120

The same prompt, decoding (greedy, stop at <eos> or after 12 tokens) and metrics as `npm run bench:cacheblend`'s
full-prefill scheme (`cacheblend/metrics.ts`: SQuAD-style bag-of-words F1, whitespace-normalised EM), so a checkpoint
can be judged before it is exported. Questions are the first --n of the file (ids alternate seen / held-out phrasing).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

import torch

sys.path.insert(0, os.path.dirname(__file__))
from eventlog import prompt_text, tokenize, vocabulary  # noqa: E402
from model import LM  # noqa: E402


def token_f1(pred: str, gold: str) -> float:
    p, g = pred.split(), gold.split()
    if not p or not g:
        return float(len(p) == len(g))
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)


def greedy(model: LM, toks: list[int], eos: int, max_new: int = 12) -> list[int]:
    """Greedy decoding with a K/V cache (the blocks' own qkv / attend_mlp): a full prefill, then one token a step."""
    out: list[int] = []
    with torch.no_grad():
        x = model.emb(torch.tensor(toks))
        T = len(toks)
        mask = torch.full((T, T), float("-inf")).triu(1)
        cache = []
        for b in model.blocks:
            q, k, v = b.qkv(x, torch.arange(T))
            cache.append((k, v))
            x = b.attend_mlp(x, q, k, v, mask)
        for _ in range(max_new):
            nxt = int(model.head(model.norm(x[-1])).argmax())
            if nxt == eos:
                break
            out.append(nxt)
            x = model.emb(torch.tensor([nxt]))
            pos = torch.tensor([T + len(out) - 1])
            for i, b in enumerate(model.blocks):
                q, k, v = b.qkv(x, pos)
                k_all, v_all = torch.cat([cache[i][0], k]), torch.cat([cache[i][1], v])
                cache[i] = (k_all, v_all)
                x = b.attend_mlp(x, q, k_all, v_all, torch.zeros(1, k_all.shape[0]))
    return out


def greedy_reference(model: LM, toks: list[int], eos: int, max_new: int = 12) -> list[int]:
    """The same without a cache (the full forward each step), for --check."""
    out: list[int] = []
    x = list(toks)
    with torch.no_grad():
        for _ in range(max_new):
            nxt = int(model(torch.tensor([x]))[0, -1].argmax())
            if nxt == eos:
                break
            out.append(nxt)
            x.append(nxt)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--questions", default="training/cacheblend/questions/eval.jsonl")
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="", help="optional JSON with per-question answers and the summary")
    ap.add_argument("--check", type=int, default=0, help="first compare cached decoding with full forwards on N questions")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, ck = LM.from_checkpoint(a.ckpt)
    words = vocabulary()
    if len(words) != model.c.vocab:
        raise SystemExit(f"vocabulary of {len(words)} words, checkpoint has {model.c.vocab}")
    vocab = {w: i for i, w in enumerate(words)}
    with open(a.questions) as f:
        qs = [json.loads(line) for line in f][: a.n]
    prompts = [tokenize(prompt_text(q["chunks"], q["question"]), vocab) for q in qs]
    for q, toks in list(zip(qs, prompts))[: a.check]:
        if greedy(model, toks, vocab["<eos>"]) != greedy_reference(model, toks, vocab["<eos>"]):
            raise SystemExit(f"cached decoding differs from full forwards on question {q['id']}")
    rows = []
    for q, toks in zip(qs, prompts):
        ans = " ".join(words[t] for t in greedy(model, toks, vocab["<eos>"]))
        rows.append({"id": q["id"], "type": q["type"], "heldout": q["heldout_template"], "gold": q["answer"], "answer": ans,
                     "f1": token_f1(ans, q["answer"]), "em": float(" ".join(ans.split()) == " ".join(q["answer"].split()))})

    def summary(rs: list[dict]) -> dict:
        return {"n": len(rs), "f1": round(sum(r["f1"] for r in rs) / max(1, len(rs)), 4),
                "em": round(sum(r["em"] for r in rs) / max(1, len(rs)), 4)}

    res = {"ckpt": a.ckpt, "step": ck.get("step"), "all": summary(rows),
           "seen_templates": summary([r for r in rows if not r["heldout"]]),
           "heldout_templates": summary([r for r in rows if r["heldout"]]),
           "by_type": {t: summary([r for r in rows if r["type"] == t]) for t in sorted({r["type"] for r in rows})}}
    print(json.dumps(res, indent=1))
    for r in rows[:8]:
        print(f"  {r['type']:6s} gold {r['gold']!r:24s} got {r['answer']!r}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({**res, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
