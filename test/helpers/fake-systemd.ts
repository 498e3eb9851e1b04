/** A fake systemd notify socket for agent tests: NOTIFY_SOCKET / WATCHDOG_USEC point at it until restore(). */
import { createRequire } from 'node:module';
import path from 'node:path';

export function fakeSystemd(dir: string, watchdogUsec = 200_000): { got: string[]; restore(): void } {
  const sock = path.join(dir, 'notify.sock');
  const dgram = createRequire(import.meta.url)('unix-dgram') as { createSocket(t: 'unix_dgram', cb: (m: Buffer) => void): { bind(p: string): void; close(): void } };
  const got: string[] = [];
  const s = dgram.createSocket('unix_dgram', (m) => got.push(m.toString()));
  s.bind(sock);
  const env = { NOTIFY_SOCKET: process.env.NOTIFY_SOCKET, WATCHDOG_USEC: process.env.WATCHDOG_USEC };
  process.env.NOTIFY_SOCKET = sock;
  process.env.WATCHDOG_USEC = String(watchdogUsec);
  return {
    got,
    restore() {
      s.close();
      for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    },
  };
}
