"""Rebuild a PyTorch checkpoint from the committed ONNX graphs, so that a model can be re-exported with a newer
graph layout (export.py) without its original training checkpoint (which is not committed).

  /usr/bin/python3 training/cacheblend/from_onnx.py --model cacheblend/model --out training/cacheblend/run/ckpt.pt

The graphs carry every weight as an initializer: embed.onnx the embedding, head.onnx the final norm and the LM
head (as MatMul's transposed weight), layer{i}.onnx the block's two RMSNorm weights and its seven projections in
the order the trace first uses them (wq, wk, wv, wo, w1, w3, w2; MatMul's right operand = Linear weight
transposed). The rebuilt model is checked against the reference logits stored in model.json (PyTorch's logits of
the original checkpoint): a wrong mapping cannot pass.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(__file__))
from model import LM, Config  # noqa: E402

PROJ = ["wq", "wk", "wv", "wo", "w1", "w3", "w2"]


def inits(path: str) -> list[tuple[str, torch.Tensor]]:
    m = onnx.load(path)
    return [(i.name, torch.from_numpy(numpy_helper.to_array(i).copy())) for i in m.graph.initializer]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cacheblend/model")
    ap.add_argument("--out", default="training/cacheblend/run/ckpt.pt")
    a = ap.parse_args()
    with open(os.path.join(a.model, "model.json")) as f:
        meta = json.load(f)
    cfg = Config(**meta["config"])
    state: dict[str, torch.Tensor] = {}
    state["emb.weight"] = dict(inits(os.path.join(a.model, "embed.onnx")))["m.emb.weight"]
    head = inits(os.path.join(a.model, "head.onnx"))
    state["norm.w"] = dict(head)["m.norm.w"]
    state["head.weight"] = [t for n, t in head if n != "m.norm.w"][0].t().contiguous()
    for i in range(cfg.layers):
        w = inits(os.path.join(a.model, f"layer{i}.onnx"))
        named = dict(w)
        state[f"blocks.{i}.n1.w"] = named["b.n1.w"]
        state[f"blocks.{i}.n2.w"] = named["b.n2.w"]
        mats = [t for n, t in w if t.dim() == 2]
        if len(mats) != len(PROJ):
            raise SystemExit(f"layer{i}.onnx: {len(mats)} matrices, expected {len(PROJ)}")
        for p, t in zip(PROJ, mats):
            state[f"blocks.{i}.{p}.weight"] = t.t().contiguous()
    m = LM(cfg)
    m.load_state_dict(state)
    m.eval()
    ref = meta["reference"]
    with torch.no_grad():
        logits = m(torch.tensor([ref["tokens"]]))[0, -1]
    diff = float((logits - torch.tensor(ref["last_logits"])).abs().max())
    if diff > 1e-4:
        raise SystemExit(f"rebuilt model does not reproduce the reference logits (max |diff| {diff:.3g})")
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    torch.save({"config": cfg.to_json(), "state": m.state_dict(), "step": meta.get("step")}, a.out)
    print(f"rebuilt {a.out} from {a.model}: reference logits reproduced (max |diff| {diff:.2e})")


if __name__ == "__main__":
    main()
