/**
 * Video capture through the ffmpeg CLI: file, RTSP URL or V4L2 device → raw YUV420p frames.
 *
 * Why spawn ffmpeg ourselves rather than use fluent-ffmpeg: fluent-ffmpeg is deprecated and
 * unmaintained (archived upstream), and all we need is one long-running process whose stdout is
 * a rawvideo pipe; a typed async iterator over that pipe is ~150 lines and has no extra surface.
 */
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { yuvFrameSize, type YuvFrame } from '../encoder/frame.ts';

export type SourceKind = 'file' | 'rtsp' | 'v4l2';

export interface SourceSpec {
  kind: SourceKind;
  /** file path, rtsp:// URL or /dev/videoN */
  uri: string;
  /** restart a file source at its end (demo cameras) */
  loop?: boolean;
  /** pace file input at its native rate (like a live camera); default: as fast as decoded */
  realtime?: boolean;
  /** output frame rate (frames are dropped/duplicated by ffmpeg's fps filter) */
  fps?: number;
  /** output size; defaults to the source's size rounded down to even */
  width?: number;
  height?: number;
  /** seek into a file before reading (seconds) */
  startS?: number;
  /** stop after this many seconds of input */
  durationS?: number;
  /** network/device I/O timeout (ms) for RTSP and probing */
  timeoutMs?: number;
  /** ffmpeg reported a decoding problem (corrupt packet, partial file, bad NAL…) near this frame */
  onDecodeError?: (issue: DecodeIssue) => void;
}

/** A decoder complaint and where in the output it happened (frames delivered so far; ffmpeg decodes a little ahead). */
export interface DecodeIssue {
  frame: number;
  message: string;
}

/** ffmpeg warning/error lines that mean the input is damaged (not mere notices). */
const DECODE_ISSUE = /corrupt|invalid|error|partial file|truncat|missing picture|concealing|non-existing pps|no frame!/i;

/**
 * `text` with the user-info of every URL in it replaced (rtsp://user:pass@host → rtsp://***@host), and, when
 * `uri` is given, every other occurrence of that URI's user-info or password (plain or percent-decoded) too.
 * Camera URLs carry credentials; error messages, logs, /healthz and systemd STATUS= must not.
 */
export function redactUri(text: string, uri?: string): string {
  // scheme://<user-info>@ — up to the last '@' before the host's '/', so an unencoded '@' in a password is covered
  let out = text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]*@/gi, '$1***@');
  const m = uri ? /^[a-z][a-z0-9+.-]*:\/\/([^\s/?#]*)@/i.exec(uri) : null;
  if (m) {
    const info = m[1];
    const pass = info.includes(':') ? info.slice(info.indexOf(':') + 1) : '';
    const secrets = new Set<string>();
    for (const s of [info, pass]) {
      if (s.length < 3) continue; // too short to replace without mangling the message
      secrets.add(s);
      try {
        secrets.add(decodeURIComponent(s));
      } catch {
        /* not percent-encoded */
      }
    }
    for (const s of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(s).join('***');
  }
  return out;
}

export class CaptureError extends Error {
  /** the source, with any credentials in it redacted */
  readonly source: string;
  constructor(source: string, message: string, readonly framesRead = 0) {
    super(redactUri(`capture ${source}: ${message}`, source));
    this.source = redactUri(source);
    this.name = 'CaptureError';
  }
}

/** The stream ended inside a frame or ffmpeg reported corrupt input after frames were read. */
export class TruncatedStreamError extends CaptureError {
  constructor(source: string, framesRead: number, detail: string) {
    super(source, `stream truncated after frame ${framesRead}: ${detail}`, framesRead);
    this.name = 'TruncatedStreamError';
  }
}

/** What `ffmpeg -version` says about the installed FFmpeg (null: not stated). */
export interface FfmpegVersion {
  /** FFmpeg's major version ("ffmpeg version 4.4.2-0ubuntu…" → 4, "n6.1" → 6); null for git builds ("N-112345-g…") */
  major: number | null;
  /** libavformat's major version (58 = FFmpeg 4.x, 59 = 5.x, 60 = 6.x…), from the "libavformat 58. 76.100" line */
  libavformat: number | null;
}

/** Parse `ffmpeg -version` output (its first line alone is enough for release builds). */
export function parseFfmpegVersion(output: string): FfmpegVersion {
  const first = /^\s*ff(?:mpeg|probe) version\s+(\S+)/im.exec(output)?.[1] ?? '';
  // "4.4.2-0ubuntu0.22.04.1", "5.1.8-0+deb12u1", "n6.1", "7.0.1-static"; not "N-112345-gabcdef" (a git snapshot)
  const m = /^n?(\d+)\.\d+/.exec(first);
  const lavf = /^\s*libavformat\s+(\d+)\s*\./m.exec(output);
  return { major: m ? Number(m[1]) : null, libavformat: lavf ? Number(lavf[1]) : null };
}

/**
 * The RTSP demuxer's socket I/O timeout option. FFmpeg < 5 (libavformat < 59, e.g. the Jetsons' 4.2/4.4): `-stimeout`
 * (microseconds), while `-timeout` there is the *listen* timeout in seconds and turns on listen mode (ffmpeg binds
 * the camera's address instead of connecting). FFmpeg ≥ 5: `-timeout` (microseconds), and `-stimeout` is gone.
 * libavformat's version decides when known; a version that cannot be read (git snapshot) is taken as current.
 */
export function rtspTimeoutOption(v: FfmpegVersion | null): '-timeout' | '-stimeout' {
  if (v?.libavformat != null) return v.libavformat >= 59 ? '-timeout' : '-stimeout';
  if (v?.major != null) return v.major >= 5 ? '-timeout' : '-stimeout';
  return '-timeout';
}

let versionCache: FfmpegVersion | null = null;
let versionPending: Promise<FfmpegVersion | null> | null = null;

/**
 * The installed FFmpeg's version, from one `ffmpeg -version` run (async, cached for the process; a failed run,
 * e.g. ffmpeg not installed yet, is not cached). Null when it cannot be read.
 */
export function ffmpegVersion(): Promise<FfmpegVersion | null> {
  if (versionCache) return Promise.resolve(versionCache);
  versionPending ??= runCapped('ffmpeg', ['-hide_banner', '-version'], { timeoutMs: 10_000 })
    .then((r) => rememberVersion(r.status, r.stdout))
    .finally(() => {
      versionPending = null;
    });
  return versionPending;
}

/** ffmpegVersion() for the synchronous constructor path (CLI tools); shares the cache. */
function ffmpegVersionSync(): FfmpegVersion | null {
  if (versionCache) return versionCache;
  const r = spawnSync('ffmpeg', ['-hide_banner', '-version'], { encoding: 'utf8', timeout: 10_000, env: process.env });
  return rememberVersion(r.status, r.stdout ?? '');
}

/** `ffmpeg -version`'s outcome → the version, cached when it could be read (a failed run is not cached). */
function rememberVersion(status: number | null, stdout: string): FfmpegVersion | null {
  const v = status === 0 ? parseFfmpegVersion(stdout) : null;
  if (v && (v.major !== null || v.libavformat !== null)) versionCache = v;
  return v;
}

/** Forget the detected FFmpeg version (tests that swap the ffmpeg on PATH). */
export function resetFfmpegVersion(): void {
  versionCache = null;
  versionPending = null;
}

/** The RTSP input options (TCP interleaved, socket timeout under the name this FFmpeg knows). */
function rtspArgs(spec: SourceSpec, version: FfmpegVersion | null): string[] {
  const us = String((spec.timeoutMs ?? 10_000) * 1000); // both options take microseconds
  return ['-rtsp_transport', 'tcp', rtspTimeoutOption(version), us];
}

/** ffmpeg's input arguments for a source (`version`: the installed FFmpeg's, see ffmpegVersion()). */
export function inputArgs(spec: SourceSpec, version: FfmpegVersion | null): string[] {
  switch (spec.kind) {
    case 'file': {
      const a: string[] = [];
      if (spec.realtime) a.push('-re');
      if (spec.loop) a.push('-stream_loop', '-1');
      if (spec.startS) a.push('-ss', String(spec.startS));
      return [...a, '-i', spec.uri];
    }
    case 'rtsp':
      return [...rtspArgs(spec, version), '-i', spec.uri];
    case 'v4l2':
      return ['-f', 'v4l2', '-i', spec.uri];
  }
}

/** ffprobe's arguments for probeSource(): geometry and rate of video stream 0. */
export function probeArgs(spec: SourceSpec, version: FfmpegVersion | null): string[] {
  const pre = spec.kind === 'rtsp' ? rtspArgs(spec, version) : spec.kind === 'v4l2' ? ['-f', 'v4l2'] : [];
  return ['-v', 'error', ...pre, '-select_streams', 'v:0', '-show_entries', 'stream=width,height,r_frame_rate', '-of', 'csv=p=0', spec.uri];
}

interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
  error?: Error;
}

/*
 * ffmpeg/ffprobe are spawned with `env: process.env` (this module's view of the environment, which is what node uses
 * by default anyway): under jest's sandbox that is the test's environment, so a test can put fake tools on PATH.
 */

/**
 * Run a short-lived command without blocking the event loop: stdout (its head) and stderr (its tail) are kept up
 * to `maxBytes` each; past `timeoutMs`, or when `signal` aborts, the child is killed (SIGKILL).
 */
function runCapped(cmd: string, args: string[], o: { timeoutMs: number; maxBytes?: number; signal?: AbortSignal }): Promise<RunResult> {
  const max = o.maxBytes ?? 64 * 1024;
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let error: Error | undefined;
    let done = false;
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    const finish = (status: number | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      resolve({ status, stdout, stderr, error });
    };
    const kill = (why: Error): void => {
      error ??= why;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    const onAbort = (): void => kill(new Error(`${cmd} aborted`));
    const timer = setTimeout(() => kill(new Error(`${cmd} timed out after ${o.timeoutMs} ms`)), o.timeoutMs);
    if (o.signal?.aborted) onAbort();
    else o.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      if (stdout.length < max) stdout = (stdout + d).slice(0, max);
    });
    child.stderr.on('data', (d: string) => {
      stderr = (stderr + d).slice(-max);
    });
    child.on('error', (e) => {
      error ??= e;
      finish(null);
    });
    child.on('close', (code) => finish(error ? null : code));
  });
}

function validate(spec: SourceSpec): void {
  if (spec.kind === 'file' && !existsSync(spec.uri)) throw new CaptureError(spec.uri, 'file not found');
  if (spec.kind === 'rtsp' && !/^rtsps?:\/\/[^/\s]+/.test(spec.uri)) throw new CaptureError(spec.uri, 'not an rtsp:// URL');
  if (spec.kind === 'v4l2' && !existsSync(spec.uri)) throw new CaptureError(spec.uri, 'V4L2 device not found');
  for (const k of ['fps', 'width', 'height'] as const) {
    const v = spec[k];
    if (v !== undefined && !(v > 0)) throw new CaptureError(spec.uri, `${k} must be positive, got ${v}`);
  }
}

export interface SourceGeometry {
  width: number;
  height: number;
  fps: number;
}

/** ffprobe's answer → geometry, or the CaptureError (its stderr's last lines, redacted). */
function probeResult(spec: SourceSpec, r: RunResult): SourceGeometry {
  const line = (r.stdout ?? '').trim().split('\n')[0] ?? '';
  const [w, h, rate] = line.split(',');
  const [num, den] = (rate ?? '').split('/').map(Number);
  if (r.status !== 0 || !(Number(w) > 0) || !(Number(h) > 0)) {
    throw new CaptureError(spec.uri, `cannot open video stream: ${(r.stderr || r.error?.message || 'no video stream').trim().split('\n').slice(-2).join(' ')}`);
  }
  return { width: Number(w), height: Number(h), fps: den ? num / den : num || 25 };
}

/**
 * Source geometry via ffprobe (video stream 0), without blocking the event loop: ffprobe runs as a child that is
 * killed after timeoutMs + 2 s (or when `signal` aborts). Rejects with a CaptureError naming the (redacted) source.
 */
export async function probeSource(spec: SourceSpec, o: { signal?: AbortSignal } = {}): Promise<SourceGeometry> {
  validate(spec);
  const version = spec.kind === 'rtsp' ? await ffmpegVersion() : null;
  const r = await runCapped('ffprobe', probeArgs(spec, version), { timeoutMs: (spec.timeoutMs ?? 10_000) + 2000, signal: o.signal });
  return probeResult(spec, r);
}

/** probeSource() that blocks: only for `new FfmpegSource(spec)` in one-shot CLI tools (the agent uses FfmpegSource.open). */
function probeSourceSync(spec: SourceSpec): SourceGeometry {
  validate(spec);
  const version = spec.kind === 'rtsp' ? ffmpegVersionSync() : null;
  const r = spawnSync('ffprobe', probeArgs(spec, version), { encoding: 'utf8', timeout: (spec.timeoutMs ?? 10_000) + 2000, maxBuffer: 1024 * 1024, env: process.env });
  return probeResult(spec, { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', error: r.error });
}

/**
 * A running capture. Iterate it with `for await`; `stop()` ends it cleanly (the iterator finishes
 * without error). Errors (bad URL, truncated or corrupt stream) are thrown from the iterator as
 * CaptureError / TruncatedStreamError naming the source and the frame.
 */
export class FfmpegSource implements AsyncIterable<YuvFrame> {
  readonly width: number;
  readonly height: number;
  readonly fps: number;
  private proc: ChildProcessByStdio<null, Readable, Readable> | null = null;
  private stopped = false;
  framesRead = 0;
  /** decoder complaints so far (see SourceSpec.onDecodeError) */
  decodeIssues = 0;

  /**
   * Probe the source (async, see probeSource()) and return the capture, ready to iterate. What a long-running
   * process (the agent) uses: the event loop keeps turning while a camera that is down times out.
   */
  static async open(spec: SourceSpec, o: { signal?: AbortSignal } = {}): Promise<FfmpegSource> {
    return new FfmpegSource(spec, await probeSource(spec, o));
  }

  /** With `probed` from probeSource(); without it the source is probed synchronously (CLI tools, tests only). */
  constructor(readonly spec: SourceSpec, probed: SourceGeometry = probeSourceSync(spec)) {
    this.width = (spec.width ?? probed.width) & ~1;
    this.height = (spec.height ?? probed.height) & ~1;
    this.fps = spec.fps ?? probed.fps;
  }

  stop(): void {
    this.stopped = true;
    this.proc?.kill('SIGTERM');
  }

  async *[Symbol.asyncIterator](): AsyncIterator<YuvFrame> {
    const { spec, width, height, fps } = this;
    const version = spec.kind === 'rtsp' ? await ffmpegVersion() : null;
    if (this.stopped) return;
    const filters = [`fps=${fps}`, `scale=${width}:${height}`];
    // warnings too: ffmpeg reports a truncated (looped) file or damaged packets only at that level
    const args = ['-hide_banner', '-nostdin', '-loglevel', 'warning', ...inputArgs(spec, version)];
    if (spec.durationS) args.push('-t', String(spec.durationS));
    args.push('-an', '-sn', '-vf', filters.join(','), '-pix_fmt', 'yuv420p', '-f', 'rawvideo', 'pipe:1');
    const proc = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    this.proc = proc;
    let stderr = '';
    proc.stderr.setEncoding('utf8');
    let partialLine = '';
    proc.stderr.on('data', (d: string) => {
      stderr = (stderr + d).slice(-4000);
      const lines = (partialLine + d).split('\n');
      partialLine = lines.pop() ?? '';
      for (const line of lines) {
        // our own stop() closes the pipe under ffmpeg: not a problem of the input
        if (this.stopped || !DECODE_ISSUE.test(line) || /pipe:1|broken pipe|connection reset/i.test(line)) continue;
        this.decodeIssues++;
        spec.onDecodeError?.({ frame: this.framesRead, message: redactUri(line.replace(/^\[[^\]]*\]\s*/, '').trim(), spec.uri) });
      }
    });
    const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)));
    const spawnError = new Promise<Error>((resolve) => proc.on('error', resolve));

    const size = yuvFrameSize(width, height);
    // each frame owns its buffer (so it can be handed to a worker thread); pipe chunks are copied in once
    let data = new Uint8Array(size);
    let pendingBytes = 0;
    try {
      for await (const chunk of proc.stdout as AsyncIterable<Buffer>) {
        let off = 0;
        while (off < chunk.length) {
          const n = Math.min(size - pendingBytes, chunk.length - off);
          data.set(chunk.subarray(off, off + n), pendingBytes);
          pendingBytes += n;
          off += n;
          if (pendingBytes < size) break;
          const frame: YuvFrame = { width, height, ptsMs: Math.round((spec.startS ?? 0) * 1000 + (this.framesRead * 1000) / fps), data };
          this.framesRead++;
          data = new Uint8Array(size);
          pendingBytes = 0;
          yield frame;
          if (this.stopped) return;
        }
      }
      const code = await Promise.race([exited, spawnError.then((e) => { throw new CaptureError(spec.uri, `cannot start ffmpeg: ${e.message}`); })]);
      if (this.stopped) return;
      const corrupt = /invalid data|truncat|partial file|error while decoding|moov atom not found|end of file/i.test(stderr);
      if (pendingBytes > 0) throw new TruncatedStreamError(spec.uri, this.framesRead, `${pendingBytes} of ${size} bytes of the next frame`);
      if (code !== 0) {
        if (this.framesRead > 0) throw new TruncatedStreamError(spec.uri, this.framesRead, stderr.trim().split('\n').slice(-2).join(' '));
        throw new CaptureError(spec.uri, `ffmpeg exited with ${code}: ${stderr.trim().split('\n').slice(-2).join(' ')}`);
      }
      if (corrupt && this.framesRead > 0) throw new TruncatedStreamError(spec.uri, this.framesRead, stderr.trim().split('\n').slice(-1)[0] ?? '');
      if (this.framesRead === 0) throw new CaptureError(spec.uri, 'no frames decoded');
    } finally {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      this.proc = null;
    }
  }
}

/** Group a frame stream into fixed-length segments (the unit the agent encodes, sends and adapts on). */
export async function* segments(frames: AsyncIterable<YuvFrame>, framesPerSegment: number): AsyncGenerator<YuvFrame[]> {
  let buf: YuvFrame[] = [];
  try {
    for await (const f of frames) {
      buf.push(f);
      if (buf.length === framesPerSegment) {
        yield buf;
        buf = [];
      }
    }
  } catch (e) {
    // the frames read before a failure still make a (short) segment; then the error goes on
    if (buf.length) yield buf;
    throw e;
  }
  if (buf.length) yield buf;
}

/**
 * Pull up to `depth` items ahead of the consumer, so the source (ffmpeg decoding into a pipe) keeps
 * working while the consumer processes the previous item instead of stalling on a full pipe.
 * Errors of the source surface at the item where they happened; returning early stops the source.
 */
export async function* readAhead<T>(source: AsyncIterable<T>, depth = 1): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  const queue: Promise<IteratorResult<T>>[] = [];
  let done = false;
  const fill = (): void => {
    while (!done && queue.length < depth + 1) {
      const p = it.next();
      queue.push(p);
      p.then((r) => { if (r.done) done = true; }, () => { done = true; });
    }
  };
  try {
    for (;;) {
      fill();
      const r = await queue.shift()!;
      if (r.done) return;
      yield r.value;
    }
  } finally {
    // drain what was requested, then close the source (async generators queue next() calls in order)
    await Promise.allSettled(queue);
    await it.return?.();
  }
}
