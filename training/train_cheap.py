#!/usr/bin/env python3
"""
AccMPEG cheap model for camstream: a small CNN trained from scratch (CPU, minutes) that predicts,
per 16x16 macroblock, P(important) = P(the MB's accuracy-gradient saliency exceeds a threshold).

Input  : RGB at half the frame's resolution, float32 [1,3,H/2,W/2] (H, W multiples of 16),
         values (rgb/255 - 0.5) / 0.25. Half-res RGB is built from YUV420p exactly as
         cheapmodel/model.ts does: Y averaged over 2x2, U/V taken as-is (the chroma planes are
         already half-res), BT.601 limited range -> RGB, clamped to 0..255.
Output : 'p_important' float32 [1,1,H/16,W/16] (softmax of 2-class logits, class 1).

Data   : directories written by `npm run label` (meta.json, sal.f32, frames.yuv).
Labels : label = 1 where sal (sum of |dS/dx| over the MB, AccMPEG's code) > T, with ONE absolute
         threshold T calibrated on the first --train dir so that --pos-frac of its MBs are positive,
         then applied to every dir (train and held-out) unchanged.
Loss   : cross-entropy with class weights [1, 2] (positives x2, as AccMPEG).

Run    : /usr/bin/python3 training/train_cheap.py --train data/labels/campus-train ... \
            --heldout data/labels/campus-bench --out cheapmodel/models/accmpeg_cheap.onnx
"""
import argparse, json, os, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(2)


def load_dir(d):
    meta = json.load(open(os.path.join(d, 'meta.json')))
    w, h, rows, cols = meta['width'], meta['height'], meta['rows'], meta['cols']
    n = len(meta['frames'])
    sal = np.fromfile(os.path.join(d, 'sal.f32'), dtype='<f4').reshape(n, rows, cols)
    fs = w * h * 3 // 2
    raw = np.fromfile(os.path.join(d, 'frames.yuv'), dtype=np.uint8)
    assert raw.size == n * fs, (d, raw.size, n * fs)
    raw = raw.reshape(n, fs)
    imgs = np.stack([half_rgb(raw[i], w, h, rows, cols) for i in range(n)])
    return imgs, sal, meta


def half_rgb(buf, w, h, rows, cols):
    """YUV420p -> half-res normalised RGB CHW, edge-padded to (rows*8, cols*8). Mirrors cheapmodel/model.ts."""
    y = buf[: w * h].reshape(h, w).astype(np.float32)
    cw, ch = w // 2, h // 2
    u = buf[w * h: w * h + cw * ch].reshape(ch, cw).astype(np.float32)
    v = buf[w * h + cw * ch:].reshape(ch, cw).astype(np.float32)
    yh = (y[0::2, 0::2] + y[1::2, 0::2] + y[0::2, 1::2] + y[1::2, 1::2]) * 0.25
    # BT.601 limited range, the constants of media/colour.ts (the committed model was trained with the same
    # matrix rounded to 3 decimals: < 0.1 grey level apart).
    c = 1.164383 * (yh - 16.0)
    r = c + 1.596027 * (v - 128.0)
    g = c - 0.391762 * (u - 128.0) - 0.812968 * (v - 128.0)
    b = c + 2.017232 * (u - 128.0)
    img = np.clip(np.stack([r, g, b]), 0, 255) / 255.0
    img = (img - 0.5) / 0.25
    ph, pw = rows * 8 - ch, cols * 8 - cw
    if ph or pw:
        img = np.pad(img, ((0, 0), (0, ph), (0, pw)), mode='edge')
    return img.astype(np.float32)


class CheapNet(nn.Module):
    """3 strided convs (half-res -> MB grid), 3 dilated convs for context, 1x1 -> 2 logits."""

    def __init__(self, c=48):
        super().__init__()
        def cbr(i, o, s=1, d=1):
            return nn.Sequential(nn.Conv2d(i, o, 3, s, padding=d, dilation=d, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))
        self.stem = nn.Sequential(cbr(3, 16, 2), cbr(16, 32, 2), cbr(32, c, 2))
        self.ctx = nn.Sequential(cbr(c, c, 1, 1), cbr(c, c, 1, 2), cbr(c, c, 1, 4))
        self.head = nn.Conv2d(2 * c, 2, 1)

    def forward(self, x):
        f = self.stem(x)
        return self.head(torch.cat([f, self.ctx(f)], 1))


class Exported(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return F.softmax(self.net(x), dim=1)[:, 1:2]


def auc(scores, labels):
    """ROC AUC via the rank statistic (ties averaged)."""
    s = np.asarray(scores, dtype=np.float64).ravel(); l = np.asarray(labels).ravel().astype(bool)
    order = np.argsort(s, kind='mergesort'); ranks = np.empty_like(s); ranks[order] = np.arange(1, s.size + 1)
    # average ties
    _, inv, cnt = np.unique(s, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks); ranks = (sums / cnt)[inv]
    npos, nneg = l.sum(), (~l).sum()
    return float((ranks[l].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def metrics(p, sal, thr):
    lab = sal > thr
    k = int(lab.sum())
    # precision@k per frame: of the k_f highest-P MBs, the share that are labelled positive
    precs, recall_topfrac = [], []
    for i in range(p.shape[0]):
        pf, lf = p[i].ravel(), lab[i].ravel()
        kf = int(lf.sum())
        if kf == 0:
            continue
        top = np.argsort(-pf)[:kf]
        precs.append(lf[top].mean())
    # share of total saliency captured by the top 10% / 20% MBs by P
    cap = {}
    for frac in (0.1, 0.2, 0.3):
        tot, got = 0.0, 0.0
        for i in range(p.shape[0]):
            pf, sf = p[i].ravel(), sal[i].ravel()
            top = np.argsort(-pf)[: int(round(frac * pf.size))]
            tot += sf.sum(); got += sf[top].sum()
        cap[f'saliency_captured_top{int(frac*100)}pct'] = got / tot
    return {'auc': auc(p, lab), 'precision_at_k': float(np.mean(precs)), 'pos_frac': float(lab.mean()),
            'mean_p_pos': float(p[lab].mean()), 'mean_p_neg': float(p[~lab].mean()), **cap}


def predict(net, imgs):
    net.eval(); out = []
    with torch.no_grad():
        for i in range(0, len(imgs), 8):
            out.append(F.softmax(net(torch.from_numpy(imgs[i:i + 8])), 1)[:, 1].numpy())
    return np.concatenate(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--train', nargs='+', required=True)
    ap.add_argument('--heldout', nargs='*', default=[])
    ap.add_argument('--out', required=True)
    ap.add_argument('--pos-frac', type=float, default=0.1)
    ap.add_argument('--epochs', type=int, default=30)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--log', default='training/train_log.json')
    a = ap.parse_args()
    torch.manual_seed(a.seed); np.random.seed(a.seed)

    train = [load_dir(d) for d in a.train]
    thr = float(np.quantile(train[0][1], 1 - a.pos_frac))
    print(f'label threshold T = {thr:.4g} (sal quantile {1 - a.pos_frac:.2f} of {a.train[0]})')
    for d, (im, s, _) in zip(a.train, train):
        print(f'train {d}: {len(im)} frames {im.shape[2:]} pos frac {float((s > thr).mean()):.3f}')
    held = [load_dir(d) for d in a.heldout]

    net = CheapNet()
    nparams = sum(p.numel() for p in net.parameters())
    print(f'params {nparams}')
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-4)
    steps_per_epoch = sum((len(im) + a.batch - 1) // a.batch for im, _, _ in train)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.epochs * steps_per_epoch)
    cw = torch.tensor([1.0, 2.0])
    log = {'threshold': thr, 'pos_frac_target': a.pos_frac, 'params': nparams, 'epochs': [], 'args': vars(a)}
    t0 = time.time()
    for ep in range(a.epochs):
        net.train(); tot, nb = 0.0, 0
        batches = []
        for di, (im, s, _) in enumerate(train):
            perm = np.random.permutation(len(im))
            batches += [(di, perm[i:i + a.batch]) for i in range(0, len(im), a.batch)]
        np.random.shuffle(batches)
        for di, idx in batches:
            im, s, _ = train[di]
            x = torch.from_numpy(im[idx]); yl = torch.from_numpy((s[idx] > thr).astype(np.int64))
            if np.random.rand() < 0.5:
                x = torch.flip(x, [3]); yl = torch.flip(yl, [2])
            x = x * (1 + 0.2 * (torch.rand(1) - 0.5)) + 0.2 * (torch.rand(1) - 0.5)  # brightness/contrast jitter
            loss = F.cross_entropy(net(x), yl, weight=cw)
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
            tot += loss.item(); nb += 1
        e = {'epoch': ep + 1, 'train_loss': tot / nb, 'seconds': round(time.time() - t0, 1)}
        if held and (ep % 5 == 4 or ep == a.epochs - 1):
            ph = predict(net, held[0][0]); e['heldout_loss'] = float(F.cross_entropy(
                torch.log(torch.from_numpy(np.stack([1 - ph, ph], 1)).clamp_min(1e-7)),
                torch.from_numpy((held[0][1] > thr).astype(np.int64)), weight=cw))
            e['heldout_auc'] = auc(ph, held[0][1] > thr)
        log['epochs'].append(e); print(json.dumps(e), flush=True)

    log['train_seconds'] = round(time.time() - t0, 1)
    log['train_metrics'] = {d: metrics(predict(net, im), s, thr) for d, (im, s, _) in zip(a.train, train)}
    log['heldout_metrics'] = {d: metrics(predict(net, im), s, thr) for d, (im, s, _) in zip(a.heldout, held)}
    print(json.dumps({'train': log['train_metrics'], 'heldout': log['heldout_metrics']}, indent=1))

    net.eval()
    h, w = train[0][0].shape[2:]
    torch.onnx.export(Exported(net), torch.zeros(1, 3, h, w), a.out, opset_version=13,
                      input_names=['rgb_half'], output_names=['p_important'],
                      dynamic_axes={'rgb_half': {2: 'h2', 3: 'w2'}, 'p_important': {2: 'rows', 3: 'cols'}})
    import onnx
    m = onnx.load(a.out); onnx.checker.check_model(m)
    m.metadata_props.add(key='camstream', value=json.dumps({'input': 'half-res RGB (x/255-0.5)/0.25, H,W multiples of 8', 'threshold_sal': thr, 'pos_frac': a.pos_frac}))
    onnx.save(m, a.out)
    print(f'wrote {a.out} ({os.path.getsize(a.out)} bytes)')
    json.dump(log, open(a.log, 'w'), indent=1)


if __name__ == '__main__':
    main()
