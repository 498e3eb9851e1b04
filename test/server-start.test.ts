/** @jest-environment ./test/helpers/ort-env.cjs */
/** A server that cannot start (its port is taken) closes what it had already opened and reports why. */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { ServerSettingsSchema } from '../config/schema.ts';
import { startServer } from '../server/main.ts';
import { DETECTOR_MODEL } from '../testdata/fixtures.ts';

const log = pino({ level: 'silent' });
const settings = (dir: string, port: number) =>
  ServerSettingsSchema.parse({ listen: { host: '127.0.0.1', port }, detector: { modelPath: DETECTOR_MODEL }, storage: { dir }, labels: { enabled: true }, log: { level: 'silent' } });

test('port in use: startServer rejects with the cause and closes its store (no WAL left open)', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'server-start-'));
  const a = await startServer(settings(path.join(dir, 'a'), 0), log);
  try {
    const bDir = path.join(dir, 'b');
    await expect(startServer(settings(bDir, a.port), log)).rejects.toThrow(/EADDRINUSE/);
    // the store was opened (WAL mode) before the listen failed; closing the last connection removes the WAL
    expect(existsSync(path.join(bDir, 'server.db'))).toBe(true);
    expect(existsSync(path.join(bDir, 'server.db-wal'))).toBe(false);
    // and the directory can be used by a server that does start
    const c = await startServer(settings(bDir, 0), log);
    expect(c.health().ok).toBe(true);
    await c.stop();
  } finally {
    await a.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);
