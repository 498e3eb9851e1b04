/** @jest-environment ./test/helpers/ort-env.cjs */
/** A server that cannot start (its port is taken) closes what it had already opened and reports why. */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { ServerSettingsSchema } from '../config/schema.ts';
import { startServer } from '../server/main.ts';
import { hashToken } from '../proc/auth.ts';
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

test('an operator\'s authenticated API connection is never evicted as a silent one at the connection limit', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'server-trust-'));
  const TOKEN = 'operator-token-0123456789abcdef';
  const s = await startServer(ServerSettingsSchema.parse({
    listen: { host: '127.0.0.1', port: 0 }, auth: { apiTokens: [hashToken(TOKEN)] }, detector: { modelPath: DETECTOR_MODEL }, storage: { dir },
    ingest: { maxConnections: 2 }, log: { level: 'silent' },
  }), log);
  const open = async (): Promise<net.Socket> => { const c = net.connect(s.port, '127.0.0.1'); await new Promise((r) => c.once('connect', r)); return c; };
  const socks: net.Socket[] = [];
  try {
    // the operator's keep-alive connection: one authorised request, then it stays open
    const api = await open();
    socks.push(api);
    const answered = new Promise<string>((r) => api.once('data', (d) => r(d.toString())));
    api.write(`GET /api/results HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nConnection: keep-alive\r\n\r\n`);
    expect(await answered).toMatch(/^HTTP\/1.1 200/);
    const silent = await open(); // says nothing
    socks.push(silent);
    await new Promise((r) => setTimeout(r, 1200)); // both older than EVICT_AFTER_MS
    const apiClosed = new Promise<boolean>((r) => { api.once('close', () => r(true)); setTimeout(() => r(false), 800); });
    const silentClosed = new Promise<boolean>((r) => { silent.once('close', () => r(true)); setTimeout(() => r(false), 800); });
    socks.push(await open()); // the limit is reached: one connection makes room
    expect(await silentClosed).toBe(true);
    expect(await apiClosed).toBe(false);
  } finally {
    socks.forEach((c) => c.destroy());
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);
