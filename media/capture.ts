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

function inputArgs(spec: SourceSpec): string[] {
  const t = String((spec.timeoutMs ?? 10_000) * 1000); // ffmpeg takes microseconds
  switch (spec.kind) {
    case 'file': {
      const a: string[] = [];
      if (spec.realtime) a.push('-re');
      if (spec.loop) a.push('-stream_loop', '-1');
      if (spec.startS) a.push('-ss', String(spec.startS));
      return [...a, '-i', spec.uri];
    }
    case 'rtsp':
      return ['-rtsp_transport', 'tcp', '-timeout', t, '-i', spec.uri];
    case 'v4l2':
      return ['-f', 'v4l2', '-i', spec.uri];
  }
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

/** Source geometry via ffprobe (video stream 0). */
export function probeSource(spec: SourceSpec): { width: number; height: number; fps: number } {
  validate(spec);
  const pre = spec.kind === 'rtsp' ? ['-rtsp_transport', 'tcp', '-timeout', String((spec.timeoutMs ?? 10_000) * 1000)] : spec.kind === 'v4l2' ? ['-f', 'v4l2'] : [];
  const r = spawnSync('ffprobe', ['-v', 'error', ...pre, '-select_streams', 'v:0', '-show_entries', 'stream=width,height,r_frame_rate', '-of', 'csv=p=0', spec.uri], {
    encoding: 'utf8',
    timeout: (spec.timeoutMs ?? 10_000) + 2000,
  });
  const line = (r.stdout ?? '').trim().split('\n')[0] ?? '';
  const [w, h, rate] = line.split(',');
  const [num, den] = (rate ?? '').split('/').map(Number);
  if (r.status !== 0 || !(Number(w) > 0) || !(Number(h) > 0)) {
    throw new CaptureError(spec.uri, `cannot open video stream: ${(r.stderr || r.error?.message || 'no video stream').trim().split('\n').slice(-2).join(' ')}`);
  }
  return { width: Number(w), height: Number(h), fps: den ? num / den : num || 25 };
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

  constructor(readonly spec: SourceSpec) {
    const probed = probeSource(spec);
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
    const filters = [`fps=${fps}`, `scale=${width}:${height}`];
    // warnings too: ffmpeg reports a truncated (looped) file or damaged packets only at that level
    const args = ['-hide_banner', '-nostdin', '-loglevel', 'warning', ...inputArgs(spec)];
    if (spec.durationS) args.push('-t', String(spec.durationS));
    args.push('-an', '-sn', '-vf', filters.join(','), '-pix_fmt', 'yuv420p', '-f', 'rawvideo', 'pipe:1');
    const proc = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
