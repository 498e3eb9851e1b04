/**
 * Replace a file so that a crash, power loss or full disk never leaves it half-written: temp file in the same
 * folder, fsync, rename over the old one, fsync of the folder. The original mode is kept. On failure the temp
 * file is removed (when the folder allows it) and the old file is untouched. Here, on the bottom floor, because
 * the config file (config/watch.ts) and the model caches (server/onnxgrad, cacheblend) all use it.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const dir = dirname(file);
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${Date.now()}.tmp`);
  let mode = 0o644;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    /* new file */
  }
  try {
    writeFileSync(tmp, data, { mode });
    const fd = openSync(tmp, 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    try {
      rmSync(tmp, { force: true }); // a full disk leaves no half-written temp file behind
    } catch {
      /* the folder itself is unusable: nothing was written there */
    }
    throw e;
  }
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } catch {
    /* some filesystems refuse directory fsync */
  } finally {
    closeSync(dfd);
  }
}
