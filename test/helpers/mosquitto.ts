/**
 * Test helper: a real mosquitto broker on a free 127.0.0.1 port, with persistence in a temp dir
 * (so persistent sessions and their queued QoS 1 messages survive `restart()`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const MOSQUITTO_BIN = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface MosquittoOptions {
  /** mosquitto_passwd file: anonymous clients are refused */
  passwordFile?: string;
  aclFile?: string;
}

export class Mosquitto {
  readonly dir: string;
  readonly confPath: string;
  readonly logPath: string;
  private proc: ChildProcess | null = null;

  private constructor(readonly port: number, opts: MosquittoOptions = {}) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'camstream-mosquitto-'));
    this.confPath = path.join(this.dir, 'mosquitto.conf');
    this.logPath = path.join(this.dir, 'mosquitto.log');
    const conf = [
      `listener ${port} 127.0.0.1`,
      ...(opts.passwordFile ? [`password_file ${opts.passwordFile}`, 'allow_anonymous false'] : ['allow_anonymous true']),
      ...(opts.aclFile ? [`acl_file ${opts.aclFile}`] : []),
      'persistence true',
      `persistence_location ${this.dir}/`,
      'persistence_file mosquitto.db',
      'autosave_interval 1',
      `log_dest file ${this.logPath}`,
      'log_type all',
      // we may run as root; keep it from switching to a user that cannot write the temp dir
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      '',
    ].join('\n');
    writeFileSync(this.confPath, conf);
  }

  static async start(port?: number, opts: MosquittoOptions = {}): Promise<Mosquitto> {
    const m = new Mosquitto(port ?? (await freePort()), opts);
    await m.start();
    return m;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.proc !== null;
  }

  async start(): Promise<void> {
    if (this.proc) return;
    const proc = spawn(MOSQUITTO_BIN, ['-c', this.confPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    this.proc = proc;
    let exited: number | null | undefined;
    proc.once('exit', (code) => {
      exited = code;
      if (this.proc === proc) this.proc = null;
    });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (exited !== undefined) {
        throw new Error(`mosquitto exited with code ${exited} on port ${this.port}: ${stderr}${this.log()}`);
      }
      if (await canConnect(this.port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`mosquitto did not listen on 127.0.0.1:${this.port} within 10 s: ${stderr}${this.log()}`);
  }

  /** Graceful stop (SIGTERM): mosquitto writes its persistence db on the way out. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      proc.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      proc.kill(signal);
    });
    this.proc = null;
  }

  async restart(downMs = 0): Promise<void> {
    await this.stop();
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await this.start();
  }

  log(): string {
    return existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8') : '';
  }

  /** Stop and delete the temp dir. */
  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
