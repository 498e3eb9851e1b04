/**
 * sd_notify(3) for Node without a native module of our own: datagrams to $NOTIFY_SOCKET through
 * the `unix-dgram` package (same approach as zigbee2mqtt's lib/util/sd-notify.ts).
 *
 *  - soft no-op when NOTIFY_SOCKET is unset (not under systemd, or not Type=notify), when
 *    unix-dgram cannot load, or when a send fails (logged once; the service works without it);
 *  - `watchdog()` starts a ping timer (WATCHDOG=1) at half of WATCHDOG_USEC, honouring
 *    WATCHDOG_PID; the timer is unref'd so it never keeps the process alive;
 *  - abstract-namespace sockets ("@name") are translated to a leading NUL as sd_notify does.
 *    Caveat: unix-dgram copies the address with strncpy, which stops at that NUL, so an
 *    abstract address cannot reach its target through unix-dgram; we detect this up front and
 *    stay a no-op with a warning instead of sending to a wrong address. systemd itself uses the
 *    filesystem socket /run/systemd/notify, so services it starts are unaffected.
 */
import { createRequire } from 'node:module';

interface UnixDgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, cb?: (err?: Error) => void): void;
  on(event: 'error', listener: (err: Error) => void): this;
  close(): void;
}
interface UnixDgramModule {
  createSocket(type: 'unix_dgram', listener?: (msg: Buffer) => void): UnixDgramSocket;
}

export interface SdNotifyLogger {
  warn(obj: object, msg?: string): void;
  debug?(obj: object, msg?: string): void;
}

export interface SdNotifyOptions {
  /** default process.env.NOTIFY_SOCKET */
  socketPath?: string;
  /** microseconds; default process.env.WATCHDOG_USEC */
  watchdogUsec?: string | number;
  /** default process.env.WATCHDOG_PID: pings are only sent when it is unset or equals process.pid */
  watchdogPid?: string | number;
  logger?: SdNotifyLogger;
}

export class SdNotify {
  /** true when there is a socket to talk to */
  readonly enabled: boolean;
  /** the ping interval watchdog() uses, or undefined when systemd set no watchdog */
  readonly watchdogIntervalMs?: number;
  private readonly address?: string;
  private socket?: UnixDgramSocket;
  private timer?: NodeJS.Timeout;
  private readonly log?: SdNotifyLogger;
  private warned = false;

  constructor(opts: SdNotifyOptions = {}) {
    this.log = opts.logger;
    const raw = opts.socketPath ?? process.env.NOTIFY_SOCKET;
    const usec = Number(opts.watchdogUsec ?? process.env.WATCHDOG_USEC ?? NaN);
    const wpid = opts.watchdogPid ?? process.env.WATCHDOG_PID;
    if (Number.isFinite(usec) && usec > 0 && (wpid === undefined || wpid === '' || Number(wpid) === process.pid)) {
      this.watchdogIntervalMs = Math.max(1, Math.floor(usec / 2000));
    }
    if (!raw) {
      this.enabled = false;
      return;
    }
    if (raw.startsWith('@')) {
      this.address = '\0' + raw.slice(1);
      this.enabled = false;
      this.warnOnce({ socket: raw }, 'sd_notify: abstract NOTIFY_SOCKET is not reachable through unix-dgram; notifications disabled');
      return;
    }
    if (!raw.startsWith('/')) {
      this.enabled = false;
      this.warnOnce({ socket: raw }, 'sd_notify: unsupported NOTIFY_SOCKET (only filesystem paths and @abstract are defined)');
      return;
    }
    this.address = raw;
    try {
      const require = createRequire(import.meta.url);
      const mod = require('unix-dgram') as UnixDgramModule;
      this.socket = mod.createSocket('unix_dgram');
      this.socket.on('error', (err) => this.warnOnce({ err: String(err) }, 'sd_notify socket error'));
      this.enabled = true;
    } catch (err) {
      this.enabled = false;
      this.warnOnce({ err: String(err) }, 'sd_notify: unix-dgram unavailable; notifications disabled');
    }
  }

  /** Send a raw notification ("READY=1\nSTATUS=…"). Resolves true when sent, false otherwise; never rejects. */
  notify(state: string): Promise<boolean> {
    const sock = this.socket;
    if (!this.enabled || !sock || !this.address) return Promise.resolve(false);
    const buf = Buffer.from(state, 'utf8');
    return new Promise((resolve) => {
      try {
        sock.send(buf, 0, buf.length, this.address!, (err) => {
          if (err) this.warnOnce({ err: String(err), state }, 'sd_notify send failed');
          resolve(!err);
        });
      } catch (err) {
        this.warnOnce({ err: String(err), state }, 'sd_notify send failed');
        resolve(false);
      }
    });
  }

  /** READY=1 (with an optional STATUS). */
  ready(statusText?: string): Promise<boolean> {
    return this.notify(`READY=1` + (statusText ? `\nSTATUS=${oneLine(statusText)}` : ''));
  }

  /** STATUS=<text> (shown by systemctl status). */
  status(text: string): Promise<boolean> {
    return this.notify(`STATUS=${oneLine(text)}`);
  }

  /** RELOADING=1 with MONOTONIC_USEC (what Type=notify-reload expects); send ready() when done. */
  reloading(): Promise<boolean> {
    const usec = process.hrtime.bigint() / 1000n;
    return this.notify(`RELOADING=1\nMONOTONIC_USEC=${usec}`);
  }

  /** STOPPING=1 and stop the watchdog timer. */
  stopping(): Promise<boolean> {
    this.stopWatchdog();
    return this.notify('STOPPING=1');
  }

  /** One WATCHDOG=1 ping. */
  ping(): Promise<boolean> {
    return this.notify('WATCHDOG=1');
  }

  /**
   * Start pinging WATCHDOG=1 at half of WATCHDOG_USEC (first ping immediately). No-op when systemd
   * asked for no watchdog. With `alive`, a ping is sent only while it returns true (so a stuck
   * pipeline is restarted by systemd), and STATUS= carries its reason otherwise.
   * Returns the interval in ms, or undefined when not started.
   */
  watchdog(alive?: () => { ok: boolean; reason?: string }): number | undefined {
    if (!this.enabled || this.watchdogIntervalMs === undefined) return undefined;
    if (this.timer) return this.watchdogIntervalMs;
    let wasOk = true;
    const tick = (): void => {
      const h = alive?.() ?? { ok: true };
      if (h.ok) void this.ping();
      else if (wasOk) void this.notify(`STATUS=unhealthy: ${h.reason ?? 'unknown'}`);
      if (h.ok && !wasOk) void this.notify('STATUS=healthy');
      wasOk = h.ok;
    };
    tick();
    this.timer = setInterval(tick, this.watchdogIntervalMs);
    this.timer.unref();
    return this.watchdogIntervalMs;
  }

  stopWatchdog(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Stop the timer and close the socket. */
  close(): void {
    this.stopWatchdog();
    try {
      this.socket?.close();
    } catch {
      /* already closed */
    }
    this.socket = undefined;
  }

  private warnOnce(obj: object, msg: string): void {
    if (this.warned) return;
    this.warned = true;
    this.log?.warn({ component: 'sdnotify', ...obj }, msg);
  }
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

let shared: SdNotify | undefined;
/** The process-wide notifier (from the environment), created on first use. */
export function sdNotify(): SdNotify {
  shared ??= new SdNotify();
  return shared;
}
export const ready = (statusText?: string) => sdNotify().ready(statusText);
export const watchdog = () => sdNotify().watchdog();
export const stopping = () => sdNotify().stopping();
export const status = (text: string) => sdNotify().status(text);
export const reloading = () => sdNotify().reloading();
