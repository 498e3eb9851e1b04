/**
 * sd_notify against a fake systemd: a unix datagram socket we bind ourselves (through unix-dgram)
 * at a temp path, passed as NOTIFY_SOCKET.
 */
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SdNotify } from '../proc/sdnotify.ts';

interface FakeSocket {
  bind(path: string): void;
  on(ev: 'message', fn: (msg: Buffer) => void): void;
  on(ev: 'error', fn: (err: Error) => void): void;
  close(): void;
}
const unixDgram = createRequire(import.meta.url)('unix-dgram') as { createSocket(t: 'unix_dgram'): FakeSocket };

let dir: string;
let sockPath: string;
let fake: FakeSocket;
let got: string[];
let notifier: SdNotify | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'camstream-sdnotify-'));
  sockPath = join(dir, 'notify');
  got = [];
  fake = unixDgram.createSocket('unix_dgram');
  fake.on('message', (m) => got.push(m.toString('utf8')));
  fake.bind(sockPath);
});
afterEach(() => {
  notifier?.close();
  notifier = undefined;
  fake.close();
  rmSync(dir, { recursive: true, force: true });
});

const waitFor = async (cond: () => boolean, ms = 3000) => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out; got ${JSON.stringify(got)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

test('ready, status, reloading, stopping reach the socket', async () => {
  notifier = new SdNotify({ socketPath: sockPath });
  expect(notifier.enabled).toBe(true);
  expect(await notifier.ready('up: 1 camera')).toBe(true);
  expect(await notifier.status('line1\nline2')).toBe(true);
  expect(await notifier.reloading()).toBe(true);
  expect(await notifier.stopping()).toBe(true);
  await waitFor(() => got.length === 4);
  expect(got[0]).toBe('READY=1\nSTATUS=up: 1 camera');
  expect(got[1]).toBe('STATUS=line1 line2');
  expect(got[2]).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
  expect(got[3]).toBe('STOPPING=1');
});

test('watchdog pings at half of WATCHDOG_USEC, stops on stopping()', async () => {
  notifier = new SdNotify({ socketPath: sockPath, watchdogUsec: 100_000, watchdogPid: process.pid });
  expect(notifier.watchdog()).toBe(50);
  expect(notifier.watchdog()).toBe(50); // idempotent: one timer
  await waitFor(() => got.filter((m) => m === 'WATCHDOG=1').length >= 4);
  const t0 = Date.now();
  await notifier.stopping();
  await waitFor(() => got.includes('STOPPING=1'));
  const n = got.length;
  await new Promise((r) => setTimeout(r, 200));
  expect(got.length).toBe(n);
  expect(got[got.length - 1]).toBe('STOPPING=1');
  expect(Date.now() - t0).toBeLessThan(1000);
});

test('environment is the default source of settings', async () => {
  const saved = { ...process.env };
  try {
    process.env.NOTIFY_SOCKET = sockPath;
    process.env.WATCHDOG_USEC = '30000000';
    delete process.env.WATCHDOG_PID;
    notifier = new SdNotify();
    expect(notifier.enabled).toBe(true);
    expect(notifier.watchdogIntervalMs).toBe(15_000);
    await notifier.ready();
    await waitFor(() => got[0] === 'READY=1');
  } finally {
    process.env = saved;
  }
});

test('no watchdog when WATCHDOG_PID names another process, or no WATCHDOG_USEC', () => {
  notifier = new SdNotify({ socketPath: sockPath, watchdogUsec: 1_000_000, watchdogPid: process.pid + 1 });
  expect(notifier.watchdog()).toBeUndefined();
  notifier.close();
  notifier = new SdNotify({ socketPath: sockPath, watchdogUsec: '' });
  expect(notifier.watchdogIntervalMs).toBeUndefined();
  expect(notifier.watchdog()).toBeUndefined();
});

test('soft no-op without NOTIFY_SOCKET', async () => {
  const saved = process.env.NOTIFY_SOCKET;
  delete process.env.NOTIFY_SOCKET;
  try {
    notifier = new SdNotify({ watchdogUsec: 1000 });
    expect(notifier.enabled).toBe(false);
    expect(await notifier.ready()).toBe(false);
    expect(notifier.watchdog()).toBeUndefined();
    expect(await notifier.stopping()).toBe(false);
  } finally {
    if (saved !== undefined) process.env.NOTIFY_SOCKET = saved;
  }
});

test('a vanished socket is a logged soft failure, not a throw', async () => {
  const warnings: string[] = [];
  notifier = new SdNotify({ socketPath: join(dir, 'nobody-home'), logger: { warn: (_o, m) => warnings.push(m ?? '') } });
  expect(await notifier.ready()).toBe(false);
  expect(await notifier.status('x')).toBe(false);
  expect(warnings).toHaveLength(1); // warned once
});

test('abstract "@" socket: detected and disabled with a warning (unix-dgram cannot address it)', async () => {
  const warnings: string[] = [];
  notifier = new SdNotify({ socketPath: '@camstream-test', logger: { warn: (_o, m) => warnings.push(m ?? '') } });
  expect(notifier.enabled).toBe(false);
  expect(await notifier.ready()).toBe(false);
  expect(warnings[0]).toMatch(/abstract/);
});
