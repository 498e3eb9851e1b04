/**
 * bench:cacheblend — time-to-first-token and answer quality over held-out event-log questions, all schemes in one
 * run on the same questions, with every chunk's KV cache on disk (the store's RAM tier is off, so each prefill
 * reads its caches from disk; the OS page cache may still hold them — noted in the result).
 *
 *   npm run bench:cacheblend -- [--questions training/cacheblend/questions/eval.jsonl] [--n 200] [--model DIR]
 *                               [--cache-dir DIR] [--threads 1] [--warmup 3] [--out cacheblend]
 *
 * Schemes: full prefill; full reuse (every chunk's cache as is); prefix caching (`<bos> log : chunk₁` cached in
 * place, the rest computed); CacheBlend (check layer 1, K deviation) at 5 / 15 / 30 %, at 15 % by V deviation,
 * with gradual filtering (layers 1/2/3 keeping 30/20/15 %), and at 15 % with one disk read per chunk and layer
 * instead of one per chunk (the load granularity). Pre-registered headline: CacheBlend 15 %, layer 1, K.
 * TTFT = segments + hashing + cache reads + RoPE fix + compute + LM head, until the first token's logits.
 * Quality: greedy answer vs the gold answer (token F1, EM); first-token KL(full ‖ scheme) and top-1 agreement with
 * full prefill; per-layer KV deviation = Σ‖KV − KV_full‖² / Σ‖KV_full‖² over the context rows.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { argmax, decode, prefill, PrefillWorkspace, type PrefillResult, type Selection } from '../cacheblend/blend.ts';
import { ensureAll, segmentsFor, type Scheme } from '../cacheblend/context.ts';
import { bootstrap, exactMatch, klDivergence, mean, quantile, tokenF1 } from '../cacheblend/metrics.ts';
import { BlendModel, DEFAULT_MODEL_DIR } from '../cacheblend/model.ts';
import { KvStore } from '../cacheblend/store.ts';
import { linePlot } from './plot.ts';
import { printTable, writeResult } from './report.ts';

const QuestionSchema = z.object({
  id: z.number(),
  chunks: z.array(z.object({ camera: z.string(), start: z.number(), text: z.string() })).min(1),
  question: z.string(),
  answer: z.string(),
  type: z.string(),
  heldout_template: z.boolean(),
});

const { values: args } = parseArgs({
  options: {
    questions: { type: 'string', default: 'training/cacheblend/questions/eval.jsonl' },
    n: { type: 'string', default: '200' },
    model: { type: 'string', default: DEFAULT_MODEL_DIR },
    'cache-dir': { type: 'string' },
    threads: { type: 'string', default: '1' },
    warmup: { type: 'string', default: '3' },
    out: { type: 'string', default: 'cacheblend' },
  },
});

interface Variant {
  label: string;
  scheme: Scheme;
  selection: Selection | null;
  /** disk reads per chunk for all layers at once (default) or per layer (LMCache's granularity) */
  loadBy?: 'chunk' | 'layer';
}
const blend = (r: number, by: 'k' | 'v' = 'k'): Selection => ({ checkLayers: [1], ratios: [r], by });
const VARIANTS: Variant[] = [
  { label: 'full prefill', scheme: 'full_prefill', selection: null },
  { label: 'full reuse', scheme: 'full_reuse', selection: null },
  { label: 'prefix caching', scheme: 'prefix_cache', selection: null },
  { label: 'CacheBlend 5%', scheme: 'cacheblend', selection: blend(0.05) },
  { label: 'CacheBlend 15%', scheme: 'cacheblend', selection: blend(0.15) },
  { label: 'CacheBlend 30%', scheme: 'cacheblend', selection: blend(0.3) },
  { label: 'CacheBlend 15% by V', scheme: 'cacheblend', selection: blend(0.15, 'v') },
  { label: 'CacheBlend gradual 30/20/15%', scheme: 'cacheblend', selection: { checkLayers: [1, 2, 3], ratios: [0.3, 0.2, 0.15], by: 'k' } },
  { label: 'CacheBlend 15% per-layer reads', scheme: 'cacheblend', selection: blend(0.15), loadBy: 'layer' },
];

interface Row {
  ttft: number;
  f1: number;
  em: number;
  kl: number;
  top1: number;
  recomputeShare: number;
  devNum: number[];
  loadWait: number;
  heldout: boolean;
  answer: string;
}

function kvDeviation(s: PrefillResult, f: PrefillResult, W: number): number[] {
  return s.k.map((k, l) => {
    let num = 0;
    let den = 0;
    for (let i = 0; i < f.n * W; i++) {
      num += (k[i] - f.k[l][i]) ** 2 + (s.v[l][i] - f.v[l][i]) ** 2;
      den += f.k[l][i] ** 2 + f.v[l][i] ** 2;
    }
    return num / den;
  });
}

async function main(): Promise<void> {
  const lines = readFileSync(args.questions!, 'utf8').split('\n').filter(Boolean);
  const qs = lines.map((l) => QuestionSchema.parse(JSON.parse(l))).slice(0, Number(args.n));
  const model = await BlendModel.load(args.model, Number(args.threads));
  const W = model.shape.kvWidth;
  const cacheDir = args['cache-dir'] ?? mkdtempSync(path.join(os.tmpdir(), 'cacheblend-bench-'));
  const store = new KvStore(cacheDir, 0);
  console.log(`model ${model.shape.layers}x${model.shape.d} (step ${model.meta.step}); ${qs.length} questions; caches in ${cacheDir}`);
  const t0 = performance.now();
  for (const q of qs) await ensureAll(model, store, q.chunks.map((c) => c.text));
  console.log(`precomputed ${store.stats().chunks} caches (${(store.stats().bytes / 1e6).toFixed(1)} MB on disk) in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const loadBefore = os.loadavg();

  const rows: Row[][] = VARIANTS.map(() => []);
  const ctxTokens: number[] = [];
  // every scheme prefills into reused buffers (as the server's AskService does); full prefill's own set, because
  // its result stays the reference while the other schemes run
  const wsFull = new PrefillWorkspace();
  const wsOther = new PrefillWorkspace();
  const run = async (v: Variant, chunks: string[], question: string): Promise<{ pre: PrefillResult; ttft: number }> => {
    const s = performance.now();
    const segs = segmentsFor(model, v.scheme, chunks, question);
    const pre = await prefill(model, store, segs, v.selection, { ws: v.scheme === 'full_prefill' ? wsFull : wsOther, loadBy: v.loadBy });
    return { pre, ttft: performance.now() - s };
  };
  const answer = async (pre: PrefillResult): Promise<string> => {
    const out: number[] = [];
    for await (const t of decode(model, pre)) out.push(t);
    return model.detokenize(out);
  };
  const warm = Math.min(Number(args.warmup), qs.length);
  for (let i = 0; i < warm; i++) for (const v of VARIANTS) await run(v, qs[i].chunks.map((c) => c.text), qs[i].question);

  for (const [qi, q] of qs.entries()) {
    const chunks = q.chunks.map((c) => c.text);
    let full: PrefillResult | null = null;
    for (const [vi, v] of VARIANTS.entries()) {
      const { pre, ttft } = await run(v, chunks, q.question);
      if (vi === 0) full = pre;
      const f = full!;
      const dev = kvDeviation(pre, f, W);
      const recomputeShare = pre.cachedTokens ? mean(pre.recomputed.slice(1).map((r) => (r - (pre.n - pre.cachedTokens)) / pre.cachedTokens)) : 1;
      const kl = klDivergence(f.logits, pre.logits);
      const top1 = argmax(f.logits) === argmax(pre.logits) ? 1 : 0;
      const ans = await answer(pre);
      rows[vi].push({ ttft, f1: tokenF1(ans, q.answer), em: exactMatch(ans, q.answer), kl, top1, recomputeShare, devNum: dev, loadWait: pre.loadWaitMs, heldout: q.heldout_template, answer: ans });
    }
    ctxTokens.push(full!.n);
    if ((qi + 1) % 20 === 0) console.log(`${qi + 1}/${qs.length} questions`);
  }
  const loadAfter = os.loadavg();

  const fullRows = rows[0];
  const n = qs.length;
  const medianTtft = (r: Row[], idx?: number[]): number => quantile((idx ?? r.map((_, i) => i)).map((i) => r[i].ttft), 0.5);
  const schemes = VARIANTS.map((v, vi) => {
    const r = rows[vi];
    const f1 = mean(r.map((x) => x.f1));
    const f1Diff = bootstrap(n, (idx) => mean(idx.map((i) => r[i].f1 - fullRows[i].f1)));
    const speedup = medianTtft(fullRows) / medianTtft(r);
    const speedupCi = bootstrap(n, (idx) => medianTtft(fullRows, idx) / medianTtft(r, idx), 1000, 2);
    return {
      name: v.scheme,
      label: v.label,
      selection: v.selection,
      recompute_ratio: v.selection ? v.selection.ratios[v.selection.ratios.length - 1] : v.scheme === 'full_prefill' ? 1 : v.scheme === 'full_reuse' ? 0 : Number(mean(r.map((x) => x.recomputeShare)).toFixed(4)),
      f1: Number(f1.toFixed(4)),
      f1_minus_full_prefill: Number((f1 - mean(fullRows.map((x) => x.f1))).toFixed(4)),
      f1_minus_full_prefill_ci95: f1Diff.map((x) => Number(x.toFixed(4))),
      f1_seen_templates: Number(mean(r.filter((x) => !x.heldout).map((x) => x.f1)).toFixed(4)),
      f1_heldout_templates: Number(mean(r.filter((x) => x.heldout).map((x) => x.f1)).toFixed(4)),
      em: Number(mean(r.map((x) => x.em)).toFixed(4)),
      ttft_ms: Number(medianTtft(r).toFixed(2)),
      ttft_p95_ms: Number(quantile(r.map((x) => x.ttft), 0.95).toFixed(2)),
      ttft_speedup_vs_full_prefill: Number(speedup.toFixed(3)),
      ttft_speedup_ci95: speedupCi.map((x) => Number(x.toFixed(3))),
      first_token_kl: Number(mean(r.map((x) => x.kl)).toFixed(5)),
      first_token_top1_agreement: Number(mean(r.map((x) => x.top1)).toFixed(4)),
      answer_agreement_with_full_prefill: Number(mean(r.map((x, i) => (x.answer === fullRows[i].answer ? 1 : 0))).toFixed(4)),
      load_wait_ms_median: Number(quantile(r.map((x) => x.loadWait), 0.5).toFixed(3)),
      kv_deviation_per_layer: r[0].devNum.map((_, l) => Number(mean(r.map((x) => x.devNum[l])).toExponential(3))),
    };
  });

  printTable(`CacheBlend over ${n} held-out event-log questions (median context ${quantile(ctxTokens, 0.5)} tokens, ${model.shape.layers} layers, ${args.threads} thread)`,
    schemes.map((s) => ({
      scheme: s.label,
      'TTFT ms': s.ttft_ms,
      'P95 ms': s.ttft_p95_ms,
      'speedup': s.ttft_speedup_vs_full_prefill,
      F1: s.f1,
      'ΔF1 [95% CI]': `${s.f1_minus_full_prefill.toFixed(3)} [${s.f1_minus_full_prefill_ci95.map((x) => x.toFixed(3)).join(', ')}]`,
      EM: s.em,
      KL: s.first_token_kl,
      top1: s.first_token_top1_agreement,
    })));
  printTable('Per-layer KV deviation from full prefill (Σ‖ΔKV‖² / Σ‖KV‖², context rows)',
    schemes.slice(1).map((s) => Object.fromEntries([['scheme', s.label], ...s.kv_deviation_per_layer.map((d, l) => [`L${l}`, d.toExponential(2)])])));

  const head = schemes.find((s) => s.label === 'CacheBlend 15%')!;
  const reuse = schemes.find((s) => s.name === 'full_reuse')!;
  // paired over the same questions: CacheBlend 15% minus full reuse, with 95% bootstrap intervals; "measurably
  // worse" = an interval that excludes 0 on the side where full reuse is worse
  const headRows = rows[schemes.indexOf(head)];
  const reuseRows = rows[schemes.indexOf(reuse)];
  const paired = (f: (x: Row, i: number) => number) => {
    const d = (idx: number[]): number => mean(idx.map((i) => f(headRows[i], i) - f(reuseRows[i], i)));
    const ci = bootstrap(n, d, 2000, 3);
    return { diff: Number(d([...Array(n).keys()]).toFixed(5)), ci95: ci.map((x) => Number(x.toFixed(5))) };
  };
  const agree = (x: Row, i: number): number => (x.answer === fullRows[i].answer ? 1 : 0);
  const reuseVsBlend = {
    f1: paired((x) => x.f1),
    first_token_kl: paired((x) => x.kl),
    first_token_top1: paired((x) => x.top1),
    answer_agreement_with_full_prefill: paired(agree),
    measurably_worse: false,
  };
  reuseVsBlend.measurably_worse =
    reuseVsBlend.f1.ci95[0] > 0 || reuseVsBlend.first_token_kl.ci95[1] < 0 || reuseVsBlend.first_token_top1.ci95[0] > 0 || reuseVsBlend.answer_agreement_with_full_prefill.ci95[0] > 0;
  printTable('CacheBlend 15% minus full reuse, paired over the same questions (95% bootstrap CI)',
    (['f1', 'first_token_kl', 'first_token_top1', 'answer_agreement_with_full_prefill'] as const).map((k) => ({ metric: k, diff: reuseVsBlend[k].diff, 'CI low': reuseVsBlend[k].ci95[0], 'CI high': reuseVsBlend[k].ci95[1] })));
  const done = {
    cacheblend15_speedup: head.ttft_speedup_vs_full_prefill,
    speedup_at_least_2_5: head.ttft_speedup_vs_full_prefill >= 2.5,
    cacheblend15_f1_within_0_03: Math.abs(head.f1_minus_full_prefill) <= 0.03,
    full_reuse_worse_than_cacheblend15: reuseVsBlend,
  };
  console.log('\ndone-when:', JSON.stringify(done));

  const train = JSON.parse(readFileSync(path.join(args.model!, 'model.json'), 'utf8')) as { config: unknown; step?: number };
  writeResult(args.out!, {
    model: { ...(train.config as object), step: train.step, dir: path.relative(process.cwd(), args.model!) },
    questions: n,
    dev_set: 'generated on the fly from the training cameras and phrasings (training/cacheblend/train.py, seeds 1000+/7)',
    eval_set: `${args.questions}: held-out cameras, seed 99, half the questions in held-out phrasings`,
    preregistered: { headline: 'CacheBlend 15%', check_layers: [1], ratio: 0.15, by: 'k', threads: Number(args.threads) },
    context_tokens_median: quantile(ctxTokens, 0.5),
    caches: 'on disk (KvStore RAM tier off); OS page cache not dropped',
    loadavg_before: loadBefore,
    loadavg_after: loadAfter,
    done_when: done,
    schemes,
  });

  const pts = (f: (s: (typeof schemes)[number]) => number) =>
    schemes.filter((s) => s.name === 'full_reuse' || s.name === 'full_prefill' || (s.name === 'cacheblend' && s.selection?.by === 'k' && s.selection.checkLayers.length === 1)).map((s) => ({ x: s.recompute_ratio * 100, y: f(s) }));
  linePlot(path.resolve('bench', 'results', `${args.out}.png`), {
    title: `CacheBlend: quality vs recompute ratio (${n} held-out questions; 0% = full reuse, 100% = full prefill)`,
    xLabel: 'tokens recomputed after layer 1 (%)',
    yLabel: 'score',
    series: [
      { name: 'answer F1', color: [30, 90, 200], points: pts((s) => s.f1) },
      { name: 'first-token top-1 agreement', color: [220, 120, 20], points: pts((s) => s.first_token_top1_agreement) },
      { name: 'TTFT / full prefill TTFT', color: [60, 160, 60], points: pts((s) => 1 / s.ttft_speedup_vs_full_prefill) },
    ],
  });
  store.close();
  if (!args['cache-dir']) rmSync(cacheDir, { recursive: true, force: true });
  await model.release();
}

await main();
