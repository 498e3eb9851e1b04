/**
 * Reading a settings file: YAML (or JSON, which the YAML 1.2 parser reads too) → zod → typed settings.
 * Every failure is a `ConfigError` whose message names the file, the line:column and the field path.
 */
import { readFileSync } from 'node:fs';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { AgentSettingsSchema, ServerSettingsSchema, type AgentSettings, type ServerSettings } from './schema.ts';

export interface ConfigIssue {
  /** dotted field path, e.g. "encoder.baseQp"; "" for the document itself */
  path: string;
  message: string;
  /** 1-based line and column in the file, when the field (or its nearest present ancestor) is in it */
  line?: number;
  col?: number;
  kind: 'syntax' | 'schema' | 'io';
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly file: string,
    readonly issues: ConfigIssue[],
  ) {
    super(`invalid config ${file}:\n` + issues.map((i) => '  ' + formatIssue(file, i)).join('\n'));
  }
}

export function formatIssue(file: string, i: ConfigIssue): string {
  const where = i.line !== undefined ? `${file}:${i.line}:${i.col ?? 1}` : file;
  return `${where}: ${i.path ? i.path + ': ' : ''}${i.message}`;
}

export interface ParsedConfig<T> {
  value: T;
  /** the YAML document (keeps comments; used by ConfigManager.set to write the file back) */
  doc: Document;
  text: string;
}

export function dottedPath(path: ReadonlyArray<PropertyKey>): string {
  return path.map((p) => String(p)).join('.');
}

/**
 * Where a path lies in the document: the key of the deepest pair that exists along the path
 * (so a missing field points at its parent section, a wrong value at its own key).
 */
export function locate(doc: Document, lc: LineCounter, path: ReadonlyArray<PropertyKey>): { line: number; col: number } | undefined {
  let node: unknown = doc.contents;
  let offset: number | undefined = (doc.contents as YamlNode | null)?.range?.[0];
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg));
      if (!pair) break;
      const keyNode = pair.key as YamlNode | null;
      offset = keyNode?.range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as YamlNode | undefined;
      if (!item) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else {
      break;
    }
  }
  if (offset === undefined) return undefined;
  const pos = lc.linePos(offset);
  return { line: pos.line, col: pos.col };
}

/** Parse + validate text. Throws ConfigError (syntax or schema). `file` is only used in messages. */
export function parseConfigText<S extends z.ZodType>(text: string, schema: S, file: string): ParsedConfig<z.output<S>> {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => {
        const pos = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
        return { kind: 'syntax' as const, path: '', message: `YAML syntax error: ${firstLine(e.message)}`, line: pos.line, col: pos.col };
      }),
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (e) {
    // e.g. an alias bomb ("Excessive alias count"): point at the first alias
    let offset: number | undefined;
    visit(doc, {
      Alias(_k, node) {
        offset = node.range?.[0];
        return visit.BREAK;
      },
    });
    const pos = offset === undefined ? { line: 1, col: 1 } : lc.linePos(offset);
    throw new ConfigError(file, [{ kind: 'syntax', path: '', message: `YAML rejected: ${(e as Error).message}`, line: pos.line, col: pos.col }]);
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issues: ConfigIssue[] = [];
    for (const iss of result.error.issues) {
      if (iss.code === 'unrecognized_keys') {
        for (const key of iss.keys) {
          const p = [...iss.path, key];
          issues.push({ kind: 'schema', path: dottedPath(p), message: 'unknown field (typo?)', ...locate(doc, lc, p) });
        }
        continue;
      }
      const missing = iss.code === 'invalid_type' && getIn(raw, iss.path) === undefined;
      issues.push({
        kind: 'schema',
        path: dottedPath(iss.path),
        message: missing ? `required field is missing (expected ${(iss as { expected?: string }).expected ?? 'a value'})` : iss.message,
        ...locate(doc, lc, iss.path),
      });
    }
    issues.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    throw new ConfigError(file, issues);
  }
  return { value: result.data, doc, text };
}

/** Read + parse + validate a file. */
export function loadConfigFile<S extends z.ZodType>(file: string, schema: S): ParsedConfig<z.output<S>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // Node's message already starts with the code ("ENOENT: no such file or directory, open '…'")
    const message = e.code && !e.message.startsWith(e.code) ? `${e.code}: ${e.message}` : e.message;
    throw new ConfigError(file, [{ kind: 'io', path: '', message: `cannot read config file: ${message}` }]);
  }
  return parseConfigText(text, schema, file);
}

export function loadAgentConfig(file: string): AgentSettings {
  return loadConfigFile(file, AgentSettingsSchema).value;
}

export function loadServerConfig(file: string): ServerSettings {
  return loadConfigFile(file, ServerSettingsSchema).value;
}

/** `--config <file>` (or `--config=<file>`) from argv, else the fallback; `--config` without a file is an error
 * (it used to fall back silently to the default path). */
export function configPathFromArgv(argv: readonly string[], fallback: string): string {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--config' || a === '--config=') {
      const next = argv[i + 1];
      if (a === '--config' && next && !next.startsWith('--')) return next;
      throw new ConfigError('(command line)', [{ kind: 'io', path: '', message: '--config needs a file path' }]);
    }
    if (a.startsWith('--config=')) return a.slice('--config='.length);
  }
  return fallback;
}

function getIn(obj: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let cur: unknown = obj;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return cur;
}

function firstLine(s: string): string {
  return s.split('\n')[0];
}
