"""Export the trained model as per-layer ONNX graphs for cacheblend/ (TypeScript, onnxruntime-node).

  /usr/bin/python3 training/cacheblend/export.py --ckpt training/cacheblend/run/ckpt.pt --out cacheblend/model

Writes, for a model with L layers:
- embed.onnx   tokens [T] int64 -> x [T, d]
- layer{i}.onnx  x [T, d], pos [T] int64, idx [T] int64 (the tokens' rows in the context), k_ctx/v_ctx [N, Hkv, hd]
                 (the context's K/V; rows idx are overwritten by the fresh ones), mask [T, N] (0 / -inf)
                 -> y [T, d], k [T, Hkv, hd] (after RoPE), v [T, Hkv, hd]
- k{i}.onnx, v{i}.onnx  x [T, d], pos [T] -> k (after RoPE) or v [T, Hkv, hd]: the check layer's cheap probe
- layer{i}p.onnx  (i in FUSED_PROBE_LAYERS: the layer before the default check layer) layer{i}'s inputs and outputs
                 plus k_next, v_next: layer i+1's probes on y, so the check needs no separate run
- head.onnx    x [T, d] -> logits [T, vocab]  (final RMSNorm + LM head)
- model.json   config, vocabulary, and a reference: a prompt's token ids and PyTorch's last-token logits
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
from eventlog import prompt_text, tokenize, vocabulary  # noqa: E402
from model import LM  # noqa: E402

OPSET = 13
FUSED_PROBE_LAYERS = [0]  # before CacheBlend's default check layer 1


class Layer(nn.Module):
    def __init__(self, b):
        super().__init__()
        self.b = b

    def forward(self, x, pos, idx, k_ctx, v_ctx, mask):
        return self.b.partial(x, pos, idx, k_ctx, v_ctx, mask)


class LayerProbe(nn.Module):
    """Layer i plus the check probes of layer i+1 on its output: at the layer before a check layer, CacheBlend needs
    layer i+1's fresh K (or V) of the same tokens, so one graph run gives both (no second run, no second gather)."""

    def __init__(self, b, nb):
        super().__init__()
        self.b = b
        self.nb = nb

    def forward(self, x, pos, idx, k_ctx, v_ctx, mask):
        y, k, v = self.b.partial(x, pos, idx, k_ctx, v_ctx, mask)
        return y, k, v, self.nb.probe(y, pos, "k"), self.nb.probe(y, pos, "v")


class Probe(nn.Module):
    def __init__(self, b, by):
        super().__init__()
        self.b = b
        self.by = by

    def forward(self, x, pos):
        return self.b.probe(x, pos, self.by)


class Embed(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, tokens):
        return self.m.emb(tokens)


class Head(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m.head(self.m.norm(x))


def export(mod, args, names_in, names_out, dyn, path):
    torch.onnx.export(mod, args, path, input_names=names_in, output_names=names_out, dynamic_axes=dyn, opset_version=OPSET,
                      do_constant_folding=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default="training/cacheblend/run/ckpt.pt")
    ap.add_argument("--out", default="cacheblend/model")
    ap.add_argument("--eval", default="training/cacheblend/questions/eval.jsonl")
    a = ap.parse_args()
    m, ck = LM.from_checkpoint(a.ckpt)
    cfg = m.c
    os.makedirs(a.out, exist_ok=True)
    T, N, d, hk, hd = 5, 9, cfg.d, cfg.kv_heads, cfg.head_dim
    x = torch.randn(T, d)
    pos = torch.arange(4, 4 + T)
    idx = torch.arange(4, 4 + T)
    kc, vc = torch.randn(N, hk, hd), torch.randn(N, hk, hd)
    mask = torch.zeros(T, N)
    with torch.no_grad():
        export(Embed(m), (torch.arange(T),), ["tokens"], ["x"], {"tokens": {0: "T"}, "x": {0: "T"}}, os.path.join(a.out, "embed.onnx"))
        export(Head(m), (x,), ["x"], ["logits"], {"x": {0: "T"}, "logits": {0: "T"}}, os.path.join(a.out, "head.onnx"))
        for i, b in enumerate(m.blocks):
            layer_in = ["x", "pos", "idx", "k_ctx", "v_ctx", "mask"]
            layer_axes = {"x": {0: "T"}, "pos": {0: "T"}, "idx": {0: "T"}, "k_ctx": {0: "N"}, "v_ctx": {0: "N"}, "mask": {0: "T", 1: "N"},
                          "y": {0: "T"}, "k": {0: "T"}, "v": {0: "T"}}
            export(Layer(b), (x, pos, idx, kc, vc, mask), layer_in, ["y", "k", "v"], layer_axes, os.path.join(a.out, f"layer{i}.onnx"))
            if i in FUSED_PROBE_LAYERS and i + 1 < cfg.layers:
                export(LayerProbe(b, m.blocks[i + 1]), (x, pos, idx, kc, vc, mask), layer_in, ["y", "k", "v", "k_next", "v_next"],
                       {**layer_axes, "k_next": {0: "T"}, "v_next": {0: "T"}}, os.path.join(a.out, f"layer{i}p.onnx"))
            for by in ("k", "v"):
                export(Probe(b, by), (x, pos), ["x", "pos"], [by], {"x": {0: "T"}, "pos": {0: "T"}, by: {0: "T"}},
                       os.path.join(a.out, f"{by}{i}.onnx"))
        # a reference for the TypeScript tests: the first eval prompt's tokens and PyTorch's logits at its last token
        words = vocabulary()
        vocab = {w: i for i, w in enumerate(words)}
        with open(a.eval) as f:
            ex = json.loads(f.readline())
        toks = tokenize(prompt_text(ex["chunks"], ex["question"]), vocab)
        logits_full = m(torch.tensor([toks]))[0, -1]
        logits_partial = m.prefill_ref(torch.tensor(toks))[-1]
        assert torch.allclose(logits_full, logits_partial, atol=1e-4), float((logits_full - logits_partial).abs().max())
    meta = {"config": cfg.to_json(), "vocab": words, "step": ck.get("step"),
            "reference": {"tokens": toks, "last_logits": [round(float(v), 6) for v in logits_full]}}
    with open(os.path.join(a.out, "model.json"), "w") as f:
        json.dump(meta, f)
    print(f"exported {cfg.layers} layers to {a.out}; batch/partial paths agree "
          f"(max diff {float((logits_full - logits_partial).abs().max()):.2e})")


if __name__ == "__main__":
    main()
