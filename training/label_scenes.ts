/**
 * Labels every scene's training and evaluation span (testdata/scenes.ts) with the labelling CLI's
 * labelVideo(): npx tsx training/label_scenes.ts [scene …]. Skips spans already labelled.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { labelVideo } from '../server/label-cli.ts';
import { DETECTOR_MODEL } from '../testdata/fixtures.ts';
import { SCENES, labelDir } from '../testdata/scenes.ts';

const only = process.argv.slice(2);
for (const s of SCENES) {
  if (only.length && !only.includes(s.name)) continue;
  for (const part of ['eval', 'train'] as const) {
    const out = path.resolve(labelDir(s.name, part));
    if (existsSync(path.join(out, 'meta.json'))) continue;
    const sp = s[part];
    const t = performance.now();
    const r = await labelVideo({ video: s.video, out, modelPath: DETECTOR_MODEL, fps: sp.fps, startS: sp.startS, durationS: sp.durationS });
    console.error(`${s.name} ${part}: ${r.frames} frames ${r.rows}x${r.cols} MBs, ${((performance.now() - t) / 1000).toFixed(0)} s`);
  }
}
