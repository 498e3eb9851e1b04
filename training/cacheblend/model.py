"""A small Llama-style decoder: RMSNorm, rotary positions (RoPE), grouped-query attention, SwiGLU MLP.

Besides the usual full-sequence forward, each block has the two entry points that CacheBlend needs and that are
exported to ONNX one graph per layer (`export.py`):
- `probe(x, pos, by)`: the K (after RoPE) or the V of some tokens, for comparing with cached KV at a check layer;
- `partial(x, pos, idx, k_ctx, v_ctx, mask)`: run the block for T tokens whose K/V are written into the context's
  K/V at rows `idx`, attending to all N context rows under an explicit additive mask [T, N].
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab: int = 155
    d: int = 256
    layers: int = 6
    heads: int = 8
    kv_heads: int = 2
    ffn: int = 512
    rope_theta: float = 10000.0
    eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.d // self.heads

    def to_json(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        # written as x / sqrt(mean(x²) + eps) · w: the pattern onnxruntime fuses into one SimplifiedLayerNormalization
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


def rope_tables(pos: torch.Tensor, hd: int, theta: float):
    """cos/sin [T, hd/2] of pos * theta^(-2i/hd), with the angle in float64 (then float32) so that a key rotated
    later by a position delta (cacheblend/rope.ts, in float64) matches a key computed at the new position."""
    inv = theta ** (-torch.arange(0, hd // 2, dtype=torch.float64) * 2.0 / hd)
    ang = pos.to(torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).to(torch.float32), torch.sin(ang).to(torch.float32)


def _rotate_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, hd: int) -> torch.Tensor:
    """Rotate pairs (i, i + hd/2) of x's last dim by tables cos/sin that broadcast against x[..., :hd/2]."""
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def _rope_t(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, hd: int) -> torch.Tensor:
    """x [T, H, hd] rotated by tables cos/sin [T, hd/2] (hd a Python int: constant slices in the ONNX graph)."""
    return _rotate_half(x, cos[:, None, :], sin[:, None, :], hd)


class Block(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        hd = c.head_dim
        self.n1 = RMSNorm(c.d, c.eps)
        self.wq = nn.Linear(c.d, c.heads * hd, bias=False)
        self.wk = nn.Linear(c.d, c.kv_heads * hd, bias=False)
        self.wv = nn.Linear(c.d, c.kv_heads * hd, bias=False)
        self.wo = nn.Linear(c.heads * hd, c.d, bias=False)
        self.n2 = RMSNorm(c.d, c.eps)
        self.w1 = nn.Linear(c.d, c.ffn, bias=False)
        self.w3 = nn.Linear(c.d, c.ffn, bias=False)
        self.w2 = nn.Linear(c.ffn, c.d, bias=False)

    def qkv(self, x: torch.Tensor, pos: torch.Tensor):
        """x [T, d] -> q [T, H, hd], k [T, Hkv, hd] (both after RoPE), v [T, Hkv, hd]. Shapes use -1 for T so the
        exported graph needs no Shape/Gather/Concat chains (each node costs a few µs per call at small T)."""
        c = self.c
        h = self.n1(x)
        cos, sin = rope_tables(pos, c.head_dim, c.rope_theta)
        q = _rope_t(self.wq(h).view(-1, c.heads, c.head_dim), cos, sin, c.head_dim)
        return q, self._k(h, cos, sin), self._v(h)

    def _k(self, h, cos, sin):
        c = self.c
        return _rope_t(self.wk(h).view(-1, c.kv_heads, c.head_dim), cos, sin, c.head_dim)

    def _v(self, h):
        c = self.c
        return self.wv(h).view(-1, c.kv_heads, c.head_dim)

    def probe(self, x: torch.Tensor, pos: torch.Tensor, by: str):
        """The check layer's cheap probe: only K (after RoPE) or only V of some tokens, [T, Hkv, hd]."""
        h = self.n1(x)
        if by == "v":
            return self._v(h)
        return self._k(h, *rope_tables(pos, self.c.head_dim, self.c.rope_theta))

    def attend_mlp(self, x, q, k_all, v_all, mask):
        """x [T, d]; q [T, H, hd]; k_all/v_all [N, Hkv, hd]; mask [T, N] additive (0 or -inf).
        Query head h uses KV head h // (H / Hkv): scores are one broadcast matmul [Hkv, rep, T, hd] x [Hkv, 1, hd, N]
        (no repeat of K/V, no data-dependent reshapes)."""
        c = self.c
        rep = c.heads // c.kv_heads
        qg = q.reshape(-1, c.kv_heads, rep, c.head_dim).permute(1, 2, 0, 3)  # [Hkv, rep, T, hd]
        s = torch.matmul(qg, k_all.permute(1, 2, 0).unsqueeze(1)) * (1.0 / math.sqrt(c.head_dim)) + mask  # [Hkv, rep, T, N]
        p = torch.softmax(s, dim=-1)
        o = torch.matmul(p, v_all.permute(1, 0, 2).unsqueeze(1))  # [Hkv, rep, T, hd]
        o = o.permute(2, 0, 1, 3).reshape(-1, c.heads * c.head_dim)
        x = x + self.wo(o)
        h = self.n2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))

    def partial(self, x, pos, idx, k_ctx, v_ctx, mask):
        q, k, v = self.qkv(x, pos)
        # fresh K/V written over rows idx of the context (one ScatterND per tensor in ONNX: whole rows, no per-element indices)
        k_all = k_ctx.index_put((idx,), k)
        v_all = v_ctx.index_put((idx,), v)
        return self.attend_mlp(x, q, k_all, v_all, mask), k, v

    def forward_batch(self, x, cos_sin_mask):
        """Training path: x [B, T, d], full causal attention."""
        c = self.c
        B, T, _ = x.shape
        cos, sin, mask = cos_sin_mask
        h = self.n1(x)
        q = self.wq(h).view(B, T, c.heads, c.head_dim)
        k = self.wk(h).view(B, T, c.kv_heads, c.head_dim)
        v = self.wv(h).view(B, T, c.kv_heads, c.head_dim)
        q, k = _rope_b(q, cos, sin), _rope_b(k, cos, sin)
        rep = c.heads // c.kv_heads
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        att = torch.einsum("bthd,bnhd->bhtn", q, k) / math.sqrt(c.head_dim) + mask
        att = torch.softmax(att, dim=-1)
        o = torch.einsum("bhtn,bnhd->bthd", att, v).reshape(B, T, c.heads * c.head_dim)
        x = x + self.wo(o)
        h = self.n2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


def _rope_b(x, cos, sin):
    """Training path: x [B, T, H, hd], tables already shaped [1, T, 1, hd/2]."""
    return _rotate_half(x, cos, sin, x.shape[-1])


class LM(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.emb = nn.Embedding(c.vocab, c.d)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.layers)])
        self.norm = RMSNorm(c.d, c.eps)
        self.head = nn.Linear(c.d, c.vocab, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        for b in self.blocks:  # scaled residual projections (GPT-2 style)
            nn.init.normal_(b.wo.weight, std=0.02 / math.sqrt(2 * c.layers))
            nn.init.normal_(b.w2.weight, std=0.02 / math.sqrt(2 * c.layers))

    @staticmethod
    def from_checkpoint(path: str) -> tuple["LM", dict]:
        """A model in eval mode from a train.py checkpoint ({config, state, step}), and the checkpoint."""
        ck = torch.load(path)
        m = LM(Config(**ck["config"]))
        m.load_state_dict(ck["state"])
        m.eval()
        return m, ck

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> logits [B, T, vocab] under full causal attention from position 0."""
        c = self.c
        B, T = tokens.shape
        pos = torch.arange(T)
        cos, sin = rope_tables(pos, c.head_dim, c.rope_theta)
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
        mask = torch.full((T, T), float("-inf")).triu(1)[None, None]
        x = self.emb(tokens)
        for b in self.blocks:
            x = b.forward_batch(x, (cos, sin, mask))
        return self.head(self.norm(x))

    def prefill_ref(self, tokens: torch.Tensor) -> torch.Tensor:
        """Single sequence via the per-layer `partial` path (the path the ONNX graphs take): logits [T, vocab]."""
        T = tokens.shape[0]
        pos = torch.arange(T)
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.emb(tokens)
        hk = self.c.kv_heads, self.c.head_dim
        for b in self.blocks:
            x, _, _ = b.partial(x, pos, pos, torch.zeros(T, *hk), torch.zeros(T, *hk), mask)
        return self.head(self.norm(x))
