/** isMainModule: the daemons' "am I the script node started?" check holds through symlinks (a moved /opt). */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { isMainModule } from '../proc/main-module.ts';

test('true for the script itself and for a symlink to it or to its folder; false for another file', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'main-module-'));
  try {
    const real = path.join(dir, 'real');
    writeFileSync(path.join(dir, 'x'), '');
    mkdirSync(real);
    const script = path.join(real, 'main.js');
    writeFileSync(script, '');
    symlinkSync(real, path.join(dir, 'linked'));
    const url = pathToFileURL(script).href; // what node puts in import.meta.url (symlinks resolved)
    expect(isMainModule(url, script)).toBe(true);
    expect(isMainModule(url, path.join(dir, 'linked', 'main.js'))).toBe(true); // the plain comparison said false
    expect(`file://${path.join(dir, 'linked', 'main.js')}` === url).toBe(false);
    expect(isMainModule(url, path.join(dir, 'x'))).toBe(false);
    expect(isMainModule(url, undefined)).toBe(false);
    expect(isMainModule(url, path.join(dir, 'missing.js'))).toBe(false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
