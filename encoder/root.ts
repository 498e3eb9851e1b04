/**
 * The package's root directory, found by walking up from this file to the package.json named "camstream".
 * Built files (addons in build/, the committed models) are resolved from here, so the same code works run
 * from the TypeScript sources (tsx, jest) and compiled to dist/ (`npm run build`, what the services run).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    const pj = path.join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'camstream') return dir;
      } catch {
        // not ours (or unreadable): keep walking
      }
    }
    if (path.dirname(dir) === dir) throw new Error(`camstream package root not found above ${start}`);
  }
}

export const PACKAGE_ROOT = findRoot(path.dirname(fileURLToPath(import.meta.url)));

/** A path inside the package, e.g. fromRoot('build', 'encoder', 'Release', 'camstream_encoder.node'). */
export const fromRoot = (...parts: string[]): string => path.join(PACKAGE_ROOT, ...parts);
