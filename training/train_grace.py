#!/usr/bin/env python3
"""Grace++ P-frame codec: training and ONNX export (CPU, Debian's PyTorch 1.13).

A conditional residual codec on the previous *decoded* frame (no optical flow: a flow net does not
train to usefulness in the ~1 h of shared CPU this was given; the conditional coder lets the decoder
learn to copy the reference where the latent is zero, which is exactly what a lost packet produces).

  encoder E(x, ref) -> y  [C, H/8, W/8]           quantised by rounding (TS side, after clamping)
  decoder D(y_hat, ref) -> x_hat = ref + residual  (clamped to [0,1])
  prior: per-channel zero-mean Laplace with learned scale (training rate term); at run time the
         coder picks, per frame and channel, one of a fixed family of 16-bit CDF tables
         (forward-adaptive "hyperprior-lite", copied into every packet), see export_tables().

Loss = lambda * 255^2 * MSE(x, D(mask * round(y), ref)) + bits per pixel, where mask zeroes a random
fraction p ~ U(0, pmax) of the latent elements per sample (pmax = 0 gives the no-masking ablation).
Half of each batch uses a reference that the model itself decoded (with masking) from the frame before,
so the encoder learns to correct a degraded reference.

Usage:
  train_grace.py prep  --frames DIR --out data.npy
  train_grace.py train --data data.npy --lam 0.016 --pmax 0.6 --minutes 40 --out ckpt.pt [--init ckpt.pt]
  train_grace.py export --ckpt ckpt.pt --out DIR --name NAME
  train_grace.py tables --out DIR/cdf_tables.json
"""
import argparse, json, math, os, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

C_LAT = 24
W, H = 480, 272


def unshuffle(x, r):
    # explicit reshape/permute (exports to ONNX as Reshape/Transpose on any opset)
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // r, r, w // r, r)
    x = x.permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * r * r, h // r, w // r)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(96, 64, 3, padding=1)
        self.c2 = nn.Conv2d(64, 64, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(64, 64, 3, padding=1)
        self.c4 = nn.Conv2d(64, C_LAT, 3, padding=1)

    def forward(self, x, ref):
        h = unshuffle(torch.cat([x - 0.5, x - ref], 1), 4)
        h = F.relu(self.c1(h))
        h = F.relu(self.c2(h))
        h = F.relu(self.c3(h))
        return self.c4(h)


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.r8 = nn.Conv2d(192, 32, 1)
        self.d1 = nn.Conv2d(C_LAT + 32, 64, 3, padding=1)
        self.d2 = nn.Conv2d(64, 64, 3, padding=1)
        self.d3 = nn.Conv2d(16 + 48, 48, 3, padding=1)

    def forward(self, yq, ref):
        r = ref - 0.5
        h = torch.cat([yq, F.relu(self.r8(unshuffle(r, 8)))], 1)
        h = F.relu(self.d1(h))
        h = F.pixel_shuffle(self.d2(h), 2)  # 16 ch at 1/4
        h = torch.cat([F.relu(h), unshuffle(r, 4)], 1)
        res = F.pixel_shuffle(self.d3(h), 4)  # 3 ch full res
        return torch.clamp(ref + res, 0.0, 1.0)


class Codec(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = Encoder()
        self.dec = Decoder()
        self.log_scale = nn.Parameter(torch.zeros(C_LAT))

    def bits(self, y_noisy):
        b = torch.exp(self.log_scale).clamp(min=0.02).view(1, -1, 1, 1)

        def cdf(v):
            return 0.5 + 0.5 * torch.sign(v) * (1 - torch.exp(-v.abs() / b))

        p = (cdf(y_noisy + 0.5) - cdf(y_noisy - 0.5)).clamp(min=1e-9)
        return -torch.log2(p).sum()

    def forward(self, x, ref, pmax, noisy_decoder=False):
        y = self.enc(x, ref)
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        # the decoder sees the noisy latent (Balle et al.'s training proxy: a small |y| is drowned by the noise, so
        # the encoder must grow the elements worth sending) or the rounded one with straight-through gradients
        yq = y_noisy if noisy_decoder else y + (torch.round(y) - y).detach()
        if pmax > 0:
            p = torch.rand(y.shape[0], 1, 1, 1) * pmax
            yq = yq * (torch.rand_like(y) >= p).float()
        return self.dec(yq, ref), self.bits(y_noisy)


def load_triples(path):
    d = np.load(path, mmap_mode="r")  # [N,3,H,W,3] uint8
    return d


def prep(args):
    triples = []
    for f in sorted(os.listdir(args.frames)):
        if not f.endswith(".rgb"):
            continue
        a = np.fromfile(os.path.join(args.frames, f), dtype=np.uint8)
        n = a.size // (W * H * 3)
        a = a[: n * W * H * 3].reshape(n, H, W, 3)
        t = n // 3
        triples.append(a[: t * 3].reshape(t, 3, H, W, 3))
        print(f, t, "triples")
    d = np.concatenate(triples)
    np.save(args.out, d)
    print("total", d.shape)


def batch(data, bs, crop, rng):
    idx = rng.integers(0, data.shape[0], bs)
    ys = rng.integers(0, H - crop + 1, bs) // 8 * 8
    xs = rng.integers(0, W - crop + 1, bs) // 8 * 8
    out = np.stack([data[i, :, y:y + crop, x:x + crop, :] for i, y, x in zip(idx, ys, xs)])
    t = torch.from_numpy(out.astype(np.float32) / 255.0).permute(1, 0, 4, 2, 3)  # [3,B,3,h,w]
    if rng.random() < 0.5:
        t = torch.flip(t, [4])
    return t[0], t[1], t[2]


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = load_triples(args.data)
    model = Codec()
    step0 = 0
    if args.init:
        ck = torch.load(args.init)
        model.load_state_dict(ck["model"])
        if args.resume:
            step0 = ck["step"]
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    t0 = time.time()
    log = []
    step = step0
    ema = None
    npx = args.crop * args.crop * args.bs
    while time.time() - t0 < args.minutes * 60:
        if time.time() - t0 > 0.8 * args.minutes * 60:  # last 20% of the wall budget at lr/4
            for g in opt.param_groups:
                g["lr"] = args.lr / 4
        frac = (time.time() - t0) / (args.minutes * 60)
        noisy = frac < args.noise_frac  # noise proxy first, then the rounding the codec really applies
        lam = args.lam * (args.lam_warm + (1 - args.lam_warm) * min(1.0, frac / args.warm_frac)) if args.warm_frac > 0 else args.lam
        x0, x1, x2 = batch(data, args.bs, args.crop, rng)
        # reference: half the batch gets the model's own (masked) decode of x1 from x0
        ref = x1.clone()
        hb = args.bs // 2
        with torch.no_grad():
            model.eval()
            ref[:hb], _ = model(x1[:hb], x0[:hb], max(args.pmax, 0.0))
            model.train()
        xh, bits = model(x2, ref, args.pmax, noisy)
        mse = F.mse_loss(xh, x2)
        bpp = bits / npx
        loss = lam * 255 ** 2 * mse + bpp
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        psnr = -10 * math.log10(max(mse.item(), 1e-10))
        ema = (psnr, bpp.item()) if ema is None else (0.98 * ema[0] + 0.02 * psnr, 0.98 * ema[1] + 0.02 * bpp.item())
        if step % 50 == 0:
            with torch.no_grad():  # share of latent elements that survive rounding (0 = a collapsed latent)
                nz = float((torch.round(model.enc(x2, ref)) != 0).float().mean())
            rec = {"step": step, "min": round((time.time() - t0) / 60, 2), "psnr": round(ema[0], 2), "bpp": round(ema[1], 4),
                   "nonzero": round(nz, 4), "noisy": noisy, "lam": round(lam, 5)}
            log.append(rec)
            print(json.dumps(rec), flush=True)
        if step % 200 == 0:
            torch.save({"model": model.state_dict(), "step": step, "args": vars(args), "log": log}, args.out)
    torch.save({"model": model.state_dict(), "step": step, "args": vars(args), "log": log,
                "minutes": (time.time() - t0) / 60}, args.out)
    print("done", step, "steps")


def export(args):
    ck = torch.load(args.ckpt)
    model = Codec()
    model.load_state_dict(ck["model"])
    model.eval()
    x = torch.rand(1, 3, H, W)
    ref = torch.rand(1, 3, H, W)
    os.makedirs(args.out, exist_ok=True)
    dyn = {"x": {2: "h", 3: "w"}, "ref": {2: "h", 3: "w"}, "y": {2: "h8", 3: "w8"}}
    torch.onnx.export(model.enc, (x, ref), os.path.join(args.out, f"{args.name}_enc.onnx"), opset_version=16,
                      input_names=["x", "ref"], output_names=["y"], dynamic_axes=dyn)
    y = torch.round(model.enc(x, ref))
    dyn = {"y": {2: "h8", 3: "w8"}, "ref": {2: "h", 3: "w"}, "xhat": {2: "h", 3: "w"}}
    torch.onnx.export(model.dec, (y, ref), os.path.join(args.out, f"{args.name}_dec.onnx"), opset_version=16,
                      input_names=["y", "ref"], output_names=["xhat"], dynamic_axes=dyn)
    nparams = sum(p.numel() for p in model.parameters())
    meta = {"name": args.name, "params": nparams, "latent_channels": C_LAT, "stride": 8,
            "train": {k: v for k, v in ck["args"].items() if k not in ("out", "init", "data")},
            "init": os.path.basename(ck["args"].get("init") or "") or None,
            "steps": ck["step"], "minutes": round(ck.get("minutes", 0), 1),
            "final": ck["log"][-1] if ck["log"] else None,
            "learned_laplace_scales": [round(float(v), 4) for v in torch.exp(model.log_scale)]}
    with open(os.path.join(args.out, f"{args.name}.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


def tables(args):
    """Fixed family of zero-mean discretised Laplace CDFs, 16-bit, symbols -K..K (every symbol freq >= 1)."""
    K = 31
    scales = [0.04 * (1.25 ** i) for i in range(40)]  # 0.04 .. ~244
    out = []
    for s in scales:
        v = np.arange(-K, K + 1, dtype=np.float64)
        cdf = lambda t: np.where(t < 0, 0.5 * np.exp(t / s), 1 - 0.5 * np.exp(-t / s))
        p = cdf(v + 0.5) - cdf(v - 0.5)
        p[0] += cdf(np.array(-K - 0.5))
        p[-1] += 1 - cdf(np.array(K + 0.5))
        total = 1 << 16
        n = len(p)
        f = np.maximum(1, np.floor(p * (total - n)).astype(np.int64))
        f[K] += total - f.sum()  # remainder to the mode
        assert f.min() >= 1 and f.sum() == total
        out.append([int(q) for q in f])
    with open(args.out, "w") as fh:
        json.dump({"precision_bits": 16, "max_abs": K, "scales": [round(s, 5) for s in scales], "freqs": out}, fh)
    print("wrote", len(out), "tables")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd")
    ap.add_argument("--frames")
    ap.add_argument("--data")
    ap.add_argument("--out")
    ap.add_argument("--lam", type=float, default=0.016)
    ap.add_argument("--pmax", type=float, default=0.6)
    ap.add_argument("--minutes", type=float, default=40)
    ap.add_argument("--bs", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--noise-frac", type=float, default=0.0, help="share of the wall budget the decoder trains on the noisy latent")
    ap.add_argument("--lam-warm", type=float, default=1.0, help="lambda multiplier at the start, annealed to 1")
    ap.add_argument("--warm-frac", type=float, default=0.0, help="share of the wall budget the lambda warm-up lasts")
    ap.add_argument("--init")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--ckpt")
    ap.add_argument("--name")
    a = ap.parse_args()
    {"prep": prep, "train": train, "export": export, "tables": tables}[a.cmd](a)
