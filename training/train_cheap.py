#!/usr/bin/python3
"""AccMPEG cheap model: YOLOX-Nano's frozen COCO backbone (stride 8 and 16) + a small trained head.

As in AccMPEG (a frozen pretrained backbone, only a small head trained on accuracy-gradient labels),
with the server's own detector as the backbone: `../shared/models/yolox_nano.onnx` up to the output
of its dark3 (stride 8, 64 channels) and dark4 (stride 16, 128 channels) stages. The frame enters at
HALF resolution, so a stride-8 cell is one 16x16 macroblock of the frame.

The backbone is rebuilt in torch from the ONNX graph's own nodes and weights by a tiny interpreter
(Slice, Concat, Conv, Sigmoid, Mul, Add: the only ops before dark4's output), frozen, and exported
with the head as ONE ONNX model with the interface cheapmodel/model.ts already feeds:
  input  x [1,3,H,W]  half-resolution RGB normalised (rgb/255-0.5)/0.25, H=rows*8, W=cols*8
  output p [1,1,rows,cols]  P(important) per macroblock
Inside the graph: back to BGR 0-255 (YOLOX's input convention), edge padding to a multiple of 16,
backbone, head (stride-16 features upsampled x2 and concatenated with the stride-8 ones; 1x1 conv,
3x3 conv, 1x1 conv), crop to rows x cols, sigmoid.

Labels (the paper's, default): per MB, saldiff = sum over the MB of |dS/dx| * |x_HQ - x_LQ| (labelling
CLI, LQ = x264 at its --lq-qp). Threshold, calibrated per frame (--cover, default 0.5): positive = the
smallest set of the frame's MBs that holds `cover` of the frame's total saldiff, so the label does not
depend on a camera's resolution or contrast (one absolute threshold pooled over scenes gave 1.5% positives
on highway and 35% on office-lobby); a frame without detections has none. With --cover 0, one absolute
threshold T instead, chosen so that --pos-frac of all training MBs are positive. `--label sal` uses the
saliency alone (AccMPEG's code), for comparison.

  /usr/bin/python3 training/train_cheap.py --train DIR [DIR ...] --out model.onnx [--epochs 15]
      [--label saldiff|sal] [--pos-frac 0.1] [--log log.json] [--heldout DIR ...]
"""
import argparse
import json
import os
import random
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
DETECTOR = os.environ.get('CAMSTREAM_DETECTOR', os.path.join(HERE, '..', '..', 'shared', 'models', 'yolox_nano.onnx'))
F8, F16 = 'input.175', 'input.283'  # dark3 (stride 8, 64 ch) and dark4 (stride 16, 128 ch) outputs


class OnnxBackbone(nn.Module):
    """The detector graph from its input up to F8 and F16, interpreted with torch ops (frozen)."""

    def __init__(self, path=DETECTOR):
        super().__init__()
        m = onnx.load(path)
        g = m.graph
        self.consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        need, nodes = {F8, F16}, []
        for n in reversed(g.node):  # the nodes F8/F16 depend on, in graph order
            if any(o in need for o in n.output):
                nodes.append(n)
                need.update(i for i in n.input if i not in self.consts)
        self.nodes = list(reversed(nodes))
        ops = {n.op_type for n in self.nodes}
        assert ops <= {'Slice', 'Concat', 'Conv', 'Sigmoid', 'Mul', 'Add'}, ops
        self.convs = nn.ModuleDict()
        for i, n in enumerate(self.nodes):
            if n.op_type != 'Conv':
                continue
            a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            w = torch.from_numpy(self.consts[n.input[1]].copy())
            c = nn.Conv2d(w.shape[1] * a.get('group', 1), w.shape[0], tuple(a['kernel_shape']), stride=tuple(a['strides']),
                          padding=(a['pads'][0], a['pads'][1]), dilation=tuple(a.get('dilations', [1, 1])), groups=a.get('group', 1),
                          bias=len(n.input) > 2)
            assert a['pads'][0] == a['pads'][2] and a['pads'][1] == a['pads'][3]
            c.weight.data.copy_(w)
            if len(n.input) > 2:
                c.bias.data.copy_(torch.from_numpy(self.consts[n.input[2]].copy()))
            self.convs[str(i)] = c
        self.input_name = g.input[0].name
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):  # x: BGR 0-255, H and W multiples of 16
        env = {self.input_name: x}
        for i, n in enumerate(self.nodes):
            t = n.op_type
            if t == 'Slice':  # YOLOX Focus: constant starts/ends/axes/steps
                s, e, ax, st = (self.consts[k].tolist() for k in n.input[1:5])
                idx = [slice(None)] * 4
                for a_, s_, e_, st_ in zip(ax, s, e, st):
                    idx[a_] = slice(s_, None if e_ >= 2 ** 31 - 1 else e_, st_)
                y = env[n.input[0]][tuple(idx)]
            elif t == 'Concat':
                y = torch.cat([env[k] for k in n.input], dim=onnx.helper.get_attribute_value(n.attribute[0]))
            elif t == 'Conv':
                y = self.convs[str(i)](env[n.input[0]])
            elif t == 'Sigmoid':
                y = torch.sigmoid(env[n.input[0]])
            elif t == 'Mul':
                y = env[n.input[0]] * env[n.input[1]]
            else:
                y = env[n.input[0]] + env[n.input[1]]
            env[n.output[0]] = y
        return env[F8], env[F16]


class Head(nn.Module):
    def __init__(self, c8=64, c16=128, hidden=48):
        super().__init__()
        self.a = nn.Conv2d(c8 + c16, hidden, 1)
        self.b = nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2)
        self.c = nn.Conv2d(hidden, 1, 1)

    def forward(self, f8, f16):
        up = F.interpolate(f16, scale_factor=2.0, mode='nearest')[:, :, : f8.shape[2], : f8.shape[3]]
        h = F.relu(self.a(torch.cat([f8, up], 1)))
        h = F.relu(self.b(h)) + h
        return self.c(h)  # logits at the stride-8 grid


def to_bgr255(x):
    """Undo the camera-side normalisation (rgb/255-0.5)/0.25 and flip RGB to YOLOX's BGR."""
    rgb = (x * 0.25 + 0.5) * 255.0
    return rgb.flip(1)


def pad16(x):
    h, w = x.shape[2], x.shape[3]
    return F.pad(x, (0, (16 - w % 16) % 16, 0, (16 - h % 16) % 16), mode='replicate')


class CheapModel(nn.Module):
    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        rows, cols = x.shape[2] // 8, x.shape[3] // 8
        f8, f16 = self.backbone(pad16(to_bgr255(x)))
        return torch.sigmoid(self.head(f8, f16)[:, :, :rows, :cols])


# ---- data: the labelling CLI's directories -------------------------------------------------------

def half_rgb(yuv, w, h):
    """YUV420p -> half-res normalised RGB CHW, edge-padded to (rows*8, cols*8): = cheapmodel/model.ts halfResRgb."""
    rows, cols = (h + 15) // 16, (w + 15) // 16
    y = yuv[: w * h].reshape(h, w).astype(np.float64)
    cw, ch = w // 2, h // 2
    u = yuv[w * h: w * h + cw * ch].reshape(ch, cw).astype(np.float64)
    v = yuv[w * h + cw * ch: w * h + 2 * cw * ch].reshape(ch, cw).astype(np.float64)
    Y = (y[0::2, 0::2] + y[1::2, 0::2] + y[0::2, 1::2] + y[1::2, 1::2]) * 0.25
    c, d, e = Y - 16.0, u - 128.0, v - 128.0
    r = np.clip(1.164383 * c + 1.596027 * e, 0, 255)
    g = np.clip(1.164383 * c - 0.391762 * d - 0.812968 * e, 0, 255)
    b = np.clip(1.164383 * c + 2.017232 * d, 0, 255)
    img = (np.stack([r, g, b]) / 255.0 - 0.5) / 0.25
    H, W = rows * 8, cols * 8
    img = np.pad(img, ((0, 0), (0, H - ch), (0, W - cw)), mode='edge')
    return img.astype(np.float32), rows, cols


def cover_labels(lab, cover):
    """Per frame: 1 on the smallest set of MBs holding `cover` of the frame's total (= cheapmodel/labels.ts coverLabels)."""
    out = np.zeros(lab.shape, dtype=np.float32)
    for i, f in enumerate(lab.reshape(len(lab), -1)):
        order = np.argsort(-f, kind='stable')
        cum = np.cumsum(f[order], dtype=np.float64)
        t = float(cum[-1])  # summed in the same order as the running sum (as the TypeScript twin does)
        if not t > 0:  # no detection (or NaN): no positive
            continue
        k = min(len(f), int(np.searchsorted(cum, cover * t)) + 1)
        out.reshape(len(lab), -1)[i, order[:k]] = 1
    return out


def load_set(d, label):
    meta = json.load(open(os.path.join(d, 'meta.json')))
    w, h, rows, cols = meta['width'], meta['height'], meta['rows'], meta['cols']
    n = len(meta['frames'])
    yuv = np.fromfile(os.path.join(d, 'frames.yuv'), dtype=np.uint8).reshape(n, -1)
    lab = np.fromfile(os.path.join(d, label + '.f32'), dtype='<f4').reshape(n, rows, cols)
    xs = [half_rgb(yuv[i], w, h)[0] for i in range(n)]
    return {'name': os.path.basename(os.path.normpath(d)), 'x': np.stack(xs), 'lab': lab}


def auc(scores, labels):
    order = np.argsort(scores, kind='mergesort')
    s = scores[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i: j + 1]] = (i + j) / 2 + 1
        i = j + 1
    npos = labels.sum()
    nneg = len(labels) - npos
    return float('nan') if npos == 0 or nneg == 0 else float((ranks[labels == 1].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--train', nargs='+', required=True)
    ap.add_argument('--heldout', nargs='*', default=[])
    ap.add_argument('--out', required=True)
    ap.add_argument('--epochs', type=int, default=15)
    ap.add_argument('--label', choices=['saldiff', 'sal'], default='saldiff')
    ap.add_argument('--cover', type=float, default=0.5)
    ap.add_argument('--pos-frac', type=float, default=0.1)
    ap.add_argument('--pos-weight', type=float, default=2.0)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--log')
    a = ap.parse_args()
    torch.manual_seed(a.seed); random.seed(a.seed); np.random.seed(a.seed)
    torch.set_num_threads(int(os.environ.get('TORCH_THREADS', '2')))
    t0 = time.time()
    backbone = OnnxBackbone().eval()
    sets = [load_set(d, a.label) for d in a.train]
    held = [load_set(d, a.label) for d in a.heldout]
    if a.cover > 0:
        T = None
        for s in sets + held:
            s['y'] = cover_labels(s['lab'], a.cover)
    else:  # one absolute threshold: the (1 - pos_frac) quantile of every training MB's label value
        T = float(np.quantile(np.concatenate([s['lab'].ravel() for s in sets]), 1 - a.pos_frac))
        for s in sets + held:
            s['y'] = (s['lab'] > T).astype(np.float32)
    # frozen backbone features, computed once per frame and its mirror image (augmentation)
    samples = []  # (f8, f16, y) per frame, float16 features
    with torch.no_grad():
        for s in sets:
            for i in range(len(s['x'])):
                x = torch.from_numpy(s['x'][i: i + 1])
                y = torch.from_numpy(s['y'][i])[None, None]
                for flip in (False, True):
                    xx, yy = (x.flip(3), y.flip(3)) if flip else (x, y)
                    f8, f16 = backbone(pad16(to_bgr255(xx)))
                    samples.append((f8.half(), f16.half(), yy))
    t_feat = time.time() - t0
    head = Head()
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = a.epochs * len(samples)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    log = {'label': a.label, 'cover': a.cover, 'threshold': T, 'pos_frac': a.pos_frac, 'pos_weight': a.pos_weight, 'epochs': a.epochs, 'seed': a.seed,
           'train': [s['name'] for s in sets], 'train_frames': len(samples) // 2, 'heldout': [s['name'] for s in held],
           'positives': {s['name']: float(s['y'].mean()) for s in sets + held}, 'loss': []}
    for ep in range(a.epochs):
        random.shuffle(samples)
        tot = 0.0
        for f8, f16, y in samples:
            logit = head(f8.float(), f16.float())[:, :, : y.shape[2], : y.shape[3]]
            wts = 1.0 + (a.pos_weight - 1.0) * y
            loss = F.binary_cross_entropy_with_logits(logit, y, weight=wts)
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
            tot += loss.item()
        log['loss'].append(tot / len(samples))
        print(f'epoch {ep + 1}: loss {tot / len(samples):.4f}', flush=True)
    model = CheapModel(backbone, head).eval()
    with torch.no_grad():
        for s in held:
            ps = np.concatenate([model(torch.from_numpy(s['x'][i: i + 1])).numpy().ravel() for i in range(len(s['x']))])
            log.setdefault('heldout_auc', {})[s['name']] = auc(ps, s['y'].astype(np.int64).ravel())
    log['train_seconds'] = time.time() - t0
    log['feature_seconds'] = t_feat
    dummy = torch.from_numpy(sets[0]['x'][:1])
    torch.onnx.export(model, dummy, a.out, input_names=['x'], output_names=['p_important'], opset_version=13,
                      dynamic_axes={'x': {2: 'h', 3: 'w'}, 'p_important': {2: 'rows', 3: 'cols'}})
    m = onnx.load(a.out)
    for k, v in (('label', a.label), ('label_rule', f'cover {a.cover}' if a.cover > 0 else f'threshold {T!r}'), ('train', ','.join(log['train'])), ('backbone', 'yolox_nano.onnx dark3+dark4 (frozen)')):
        e = m.metadata_props.add(); e.key, e.value = k, v
    onnx.save(m, a.out)
    if a.log:
        json.dump(log, open(a.log, 'w'), indent=1)
    print(json.dumps({k: log[k] for k in ('cover', 'threshold', 'train_frames', 'positives', 'train_seconds')}))
    print(json.dumps(log.get('heldout_auc', {})))


if __name__ == '__main__':
    main()
