/**
 * The layout is the architecture: top-level folders sit on floors, and a folder may import only folders on
 * lower floors (never one beside or above it). Every .ts file in the repository is parsed for its relative
 * imports (static, type-only, re-exports and dynamic import()); a new top-level folder with TypeScript in it
 * must be given a floor here (and in the README's Architecture section).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Bottom first. Folders on the same floor do not import each other. */
const FLOORS: readonly (readonly string[])[] = [
  ['encoder', 'numeric', 'config', 'proc'],
  ['wire', 'media', 'testdata', 'native-cuda'],
  ['detector'],
  ['cheapmodel'],
  ['oneadapt', 'grace', 'cacheblend'],
  ['agent', 'server'],
  ['bench', 'scripts', 'training', 'test'],
];

const SKIP = new Set(['node_modules', 'build', '.git']);

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (SKIP.has(e.name)) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...tsFiles(p));
    else if (/\.(ts|mts|cts)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Relative module specifiers of a TypeScript source (imports, `export … from`, `import()`), by TypeScript's own scanner. */
function importSpecifiers(src: string): string[] {
  return ts.preProcessFile(src, true, true).importedFiles.map((f) => f.fileName).filter((f) => f.startsWith('./') || f.startsWith('../'));
}

interface Violation { file: string; imports: string; from: string; to: string }

/**
 * Check an import graph given as (file → its source) with paths relative to the repository root.
 * Returns the upward or sideways imports, and the top-level folders that have no floor.
 */
function checkLayers(sources: ReadonlyMap<string, string>, floors = FLOORS): { violations: Violation[]; unplaced: string[] } {
  const floorOf = new Map<string, number>();
  floors.forEach((fs, i) => fs.forEach((f) => floorOf.set(f, i)));
  const violations: Violation[] = [];
  const unplaced = new Set<string>();
  for (const [file, src] of sources) {
    const from = file.split('/')[0];
    if (!file.includes('/')) continue; // root-level config files
    if (!floorOf.has(from)) {
      unplaced.add(from);
      continue;
    }
    for (const spec of importSpecifiers(src)) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
      const to = target.split('/')[0];
      if (to === from) continue;
      const ft = floorOf.get(to);
      if (ft === undefined) unplaced.add(to);
      else if (ft >= floorOf.get(from)!) violations.push({ file, imports: spec, from, to });
    }
  }
  return { violations, unplaced: [...unplaced].sort() };
}

describe('layering', () => {
  test('the checker catches upward, sideways and unplaced imports, and allows downward ones', () => {
    const src = new Map([
      ['agent/a.ts', "import { x } from '../wire/protocol.ts';\nimport type { Y } from '../server/protocol.ts';"],
      ['media/m.ts', "export { z } from '../oneadapt/knobs.ts';"],
      ['oneadapt/o.ts', "const m = await import('../cheapmodel/model.ts'); import './local.ts'; import '../mystery/x.ts';"],
      ['wire/w.ts', "import 'node:zlib'; import { MB } from '../encoder/frame.ts';"],
    ]);
    const { violations, unplaced } = checkLayers(src);
    expect(violations.map((v) => `${v.from}->${v.to}`).sort()).toEqual(['agent->server', 'media->oneadapt']);
    expect(unplaced).toEqual(['mystery']);
  });

  test('no folder of the repository imports a folder on its own floor or above', () => {
    const files = tsFiles(ROOT);
    expect(files.length).toBeGreaterThan(50);
    const sources = new Map(files.map((f) => [path.relative(ROOT, f).split(path.sep).join('/'), readFileSync(f, 'utf8')]));
    const { violations, unplaced } = checkLayers(sources);
    expect(unplaced).toEqual([]);
    expect(violations.map((v) => `${v.file} imports ${v.imports} (${v.from} → ${v.to})`)).toEqual([]);
  });
});
