/**
 * Whether the module at `moduleUrl` (its import.meta.url) is the script node was started with. Compared as real
 * paths: node's loader resolves symlinks (and percent-escapes) in import.meta.url but not in process.argv[1], so
 * the plain `file://${argv[1]}` comparison was false under a symlinked prefix (e.g. /opt moved to NVMe on a
 * Jetson) and the daemon exited 0 without doing anything.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function isMainModule(moduleUrl: string, argv1: string | undefined = process.argv[1]): boolean {
  if (!argv1) return false;
  try {
    return realpathSync(fileURLToPath(moduleUrl)) === realpathSync(argv1);
  } catch {
    return false;
  }
}
