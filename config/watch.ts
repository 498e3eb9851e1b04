/**
 * ConfigManager: holds the last good settings of one file and keeps them current.
 *
 *  - `start()` loads the file (throws ConfigError if the first load fails) and watches its directory
 *    (so editors that write a temp file and rename it over the original are seen), debounced;
 *  - `reload()` re-reads it now (call it from a SIGHUP handler, or use `installSighup()`);
 *  - a good file whose values differ emits `change(next, prev, changedKeys)`; a bad file emits
 *    `error(ConfigError)` and the last good settings stay in force;
 *  - `set({ 'encoder.baseQp': 32 }, who, reason)` validates, writes the file back atomically
 *    (comments and layout kept: edits go through the yaml Document), and records a version.
 *
 * 'error' is only emitted when someone listens (an unhandled EventEmitter 'error' would crash the
 * daemon over a typo); otherwise the error goes to the logger.
 */
import { EventEmitter } from 'node:events';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { writeFileAtomic } from './atomic-file.ts';
import { isScalar } from 'yaml';
import type { z } from 'zod';
import { ConfigError, parseConfigText, type ParsedConfig } from './load.ts';

/** What ConfigManager needs from a store (AgentStore satisfies it). */
export interface ConfigVersionSink {
  saveConfigVersion(text: string, who: string, reason: string): number;
  latestConfigVersion(): { id: number; text: string } | undefined;
}

export interface ConfigLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface ConfigManagerOptions<S extends z.ZodType> {
  file: string;
  schema: S;
  /** where versions go (`set()` always; a changed file on start/reload as who='file') */
  store?: ConfigVersionSink;
  /** fs.watch debounce (default 200 ms); editors fire several events per save */
  debounceMs?: number;
  /** watch the file (default true); reload() and set() work either way */
  watch?: boolean;
  logger?: ConfigLogger;
}

export type ReloadResult<T> =
  | { ok: true; changed: boolean; config: T; changedKeys: string[] }
  | { ok: false; error: ConfigError; config: T };

export interface SetResult<T> {
  config: T;
  changedKeys: string[];
  /** id from store.saveConfigVersion, when a store is attached */
  version?: number;
}

export interface ConfigManagerEvents<T> {
  change: [next: T, prev: T, changedKeys: string[]];
  error: [err: ConfigError];
}

const silentLogger: ConfigLogger = { info() {}, warn() {}, error() {} };

export class ConfigManager<S extends z.ZodType> extends EventEmitter<ConfigManagerEvents<z.output<S>>> {
  readonly file: string;
  private readonly schema: S;
  private readonly store?: ConfigVersionSink;
  private readonly debounceMs: number;
  private readonly watchEnabled: boolean;
  private readonly log: ConfigLogger;
  private good?: ParsedConfig<z.output<S>>;
  private lastSeenText?: string;
  private watcher?: FSWatcher;
  private timer?: NodeJS.Timeout;

  /** The constructor does nothing but remember its options; `start()` loads and watches. */
  constructor(opts: ConfigManagerOptions<S>) {
    super();
    this.file = opts.file;
    this.schema = opts.schema;
    this.store = opts.store;
    this.debounceMs = opts.debounceMs ?? 200;
    this.watchEnabled = opts.watch ?? true;
    this.log = opts.logger ?? silentLogger;
  }

  /** Load (throws ConfigError when the file is bad at startup: there is no last good config yet) and watch. */
  start(): z.output<S> {
    const parsed = this.read();
    this.good = parsed;
    this.lastSeenText = parsed.text;
    this.recordIfNew(parsed.text, 'file', 'startup');
    if (this.watchEnabled) this.startWatching();
    return parsed.value;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** The last good settings. */
  get current(): z.output<S> {
    if (!this.good) throw new Error('ConfigManager: start() has not been called');
    return this.good.value;
  }

  /** The text of the last good file. */
  get text(): string {
    if (!this.good) throw new Error('ConfigManager: start() has not been called');
    return this.good.text;
  }

  /** Re-read the file now. Never throws: keeps the last good settings on error (and emits 'error'). */
  reload(reason = 'reload'): ReloadResult<z.output<S>> {
    const prev = this.current;
    let parsed: ParsedConfig<z.output<S>>;
    try {
      parsed = this.read();
    } catch (e) {
      // never throws: whatever went wrong becomes a ConfigError naming the file, and the last good config stays
      const err = e instanceof ConfigError ? e : new ConfigError(this.file, [{ kind: 'io', path: '', message: `cannot load: ${(e as Error)?.message ?? String(e)}` }]);
      this.lastSeenText = undefined;
      this.log.error({ component: 'config', file: this.file, issues: err.issues }, 'config reload failed; keeping last good config');
      if (this.listenerCount('error') > 0) this.emit('error', err);
      return { ok: false, error: err, config: prev };
    }
    this.lastSeenText = parsed.text;
    if (parsed.text === this.good!.text) return { ok: true, changed: false, config: prev, changedKeys: [] };
    this.good = parsed;
    this.recordIfNew(parsed.text, 'file', reason);
    const changedKeys = diffKeys(prev, parsed.value);
    if (changedKeys.length > 0) {
      this.log.info({ component: 'config', file: this.file, changedKeys }, 'config reloaded');
      this.emitChange(parsed.value, prev, changedKeys);
    }
    return { ok: true, changed: changedKeys.length > 0, config: parsed.value, changedKeys };
  }

  /** `process.on('SIGHUP')` → reload(). Returns a function that removes the handler. */
  installSighup(): () => void {
    const onHup = () => {
      this.reload('SIGHUP');
    };
    process.on('SIGHUP', onHup);
    return () => process.off('SIGHUP', onHup);
  }

  /**
   * Change settings by dotted path (`{ 'encoder.baseQp': 32, 'mqtt.enabled': true }`; `undefined`
   * removes a key). Picks up a newer good file on disk first, validates the result (throws
   * ConfigError and writes nothing when invalid), writes the file atomically (temp file, fsync,
   * rename, fsync dir), records a version (who, reason) and emits 'change'.
   */
  set(keys: Record<string, unknown>, who: string, reason: string): SetResult<z.output<S>> {
    const fresh = this.reload('reload before set');
    // the file on disk is there but does not parse (an operator mid-edit): writing the last good config plus
    // these keys would silently throw that edit away, so refuse until the file is fixed
    if (!fresh.ok && fresh.error.issues.some((i) => i.kind !== 'io')) {
      throw new ConfigError(this.file, [{ kind: 'io', path: '', message: `not changed: the file on disk is invalid (${fresh.error.issues.map((i) => i.message).join('; ')}); fix it first` }]);
    }
    const prev = this.current;
    const doc = this.good!.doc.clone();
    for (const [dotted, value] of Object.entries(keys)) {
      const path = dotted.split('.').filter((p) => p.length > 0);
      if (path.length === 0) throw new TypeError(`ConfigManager.set: empty key path "${dotted}"`);
      if (value === undefined) doc.deleteIn(path);
      else {
        // keep a scalar's own comments (e.g. "baseQp: 30 # note") by changing its value in place
        const existing = doc.getIn(path, true);
        const primitive = value === null || typeof value !== 'object';
        if (primitive && isScalar(existing)) existing.value = value;
        else doc.setIn(path, doc.createNode(value));
      }
    }
    const text = doc.toString();
    const parsed = parseConfigText(text, this.schema, this.file); // throws ConfigError: nothing written
    writeFileAtomic(this.file, text);
    this.good = parsed;
    this.lastSeenText = text;
    // the file is written: the new settings apply even if the history cannot be recorded (full disk)
    let version: number | undefined;
    try {
      version = this.store?.saveConfigVersion(text, who, reason);
    } catch (e) {
      this.log.error({ component: 'config', file: this.file, who, reason, err: (e as Error).message }, 'config applied, but its version could not be recorded');
    }
    const changedKeys = diffKeys(prev, parsed.value);
    this.log.info({ component: 'config', file: this.file, who, reason, version, changedKeys }, 'config set');
    if (changedKeys.length > 0) this.emitChange(parsed.value, prev, changedKeys);
    return { config: parsed.value, changedKeys, version };
  }

  private read(): ParsedConfig<z.output<S>> {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new ConfigError(this.file, [{ kind: 'io', path: '', message: `cannot read config file: ${e.code ?? e.message}` }]);
    }
    return parseConfigText(text, this.schema, this.file);
  }

  /** History of applied configs; a store error (full disk) is logged, never thrown: the config still applies. */
  private recordIfNew(text: string, who: string, reason: string): void {
    if (!this.store) return;
    try {
      if (this.store.latestConfigVersion()?.text === text) return;
      this.store.saveConfigVersion(text, who, reason);
    } catch (e) {
      this.log.error({ component: 'config', file: this.file, reason, err: (e as Error).message }, 'config applied, but its version could not be recorded');
    }
  }

  /** 'change' listeners run from a file-watch timer or SIGHUP: one that throws is logged, not a crash. */
  private emitChange(next: z.output<S>, prev: z.output<S>, changedKeys: string[]): void {
    try {
      this.emit('change', next, prev, changedKeys);
    } catch (e) {
      this.log.error({ component: 'config', file: this.file, changedKeys, err: (e as Error).message }, 'applying the new config failed in a listener');
    }
  }

  private startWatching(): void {
    const dir = dirname(this.file);
    const base = basename(this.file);
    // Watch the directory, not the file: a rename-over replaces the inode a file watch would follow.
    this.watcher = watch(dir, { persistent: true }, (_event, filename) => {
      if (filename !== null && filename !== base) return;
      this.schedule();
    });
    this.watcher.on('error', (err) => this.log.warn({ component: 'config', file: this.file, err: String(err) }, 'config watch error'));
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      let text: string | undefined;
      try {
        text = readFileSync(this.file, 'utf8');
      } catch {
        text = undefined; // missing: mid-replace, or deleted; reload() reports it
      }
      if (text !== undefined && text === this.lastSeenText) return; // our own write, or a touch
      this.reload('file changed');
    }, this.debounceMs);
  }
}

/** Dotted paths of the leaves that differ between two plain values (arrays compare as leaves). */
export function diffKeys(a: unknown, b: unknown, prefix = ''): string[] {
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const out: string[] = [];
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of [...keys].sort()) out.push(...diffKeys(a[k], b[k], prefix ? `${prefix}.${k}` : k));
    return out;
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix];
}
