/**
 * Keeps the capture running: opens the FFmpeg source the settings name, reads segments (the next one is
 * captured while the caller processes this one), retries a failing source with exponential backoff, resumes
 * a file where it stopped (no segment sent twice under a new id), and says whether the pipeline is healthy.
 * What happens to a segment is the caller's `onSegment`; this file knows nothing of encoding or uplink.
 */
import { statSync } from 'node:fs';
import type { Logger } from 'pino';
import { FfmpegSource, readAhead, redactUri, segments } from '../media/capture.ts';
import type { YuvFrame } from '../encoder/frame.ts';
import type { SourceSettings } from '../config/schema.ts';

export type PipelineStage = 'source' | 'encoder' | 'store';

/** An error of one pipeline stage (what /healthz and the systemd status name). */
export class PipelineStageError extends Error {
  constructor(readonly stage: PipelineStage, cause: unknown) {
    super(`${stage}: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'PipelineStageError';
  }
}

/** Run f; any error it throws is tagged with `stage` (unless already tagged). */
export async function inStage<T>(stage: PipelineStage, f: () => Promise<T> | T): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw e instanceof PipelineStageError ? e : new PipelineStageError(stage, e);
  }
}

export interface SourceSupervisorOptions {
  logger: Logger;
  /** read at every (re)start, so a config reload applies on the next restart */
  settings: () => { source: SourceSettings; segmentFrames: number };
  /** process one segment; a PipelineStageError names the failing stage, anything else counts as the source's */
  onSegment: (frames: YuvFrame[], fps: number) => Promise<void>;
  /** asked after each segment: true stops the capture (demo/tests: maxSegments) */
  done?: () => boolean;
  /** the source process started / ended (a metric) */
  onRunning?: (running: boolean) => void;
  /** first retry delay (doubles up to 60 s); default 1000 ms */
  retryMs?: number;
}

/** A file's identity for resuming: path, size and modification time (null when it cannot be read). */
function fileKey(uri: string): string | null {
  try {
    const st = statSync(uri);
    return `${uri}|${st.size}|${st.mtimeMs}`;
  } catch {
    return null;
  }
}

export class SourceSupervisor {
  /** capture failures so far (open errors and broken streams) */
  failures = 0;
  /** decoder complaints from the source (damaged or truncated input) */
  decodeIssues = 0;
  private source: FfmpegSource | null = null;
  private loop: Promise<void> | null = null;
  /** the source being probed and opened (before `loop` starts); abort() ends the probe */
  private opening: { done: Promise<void>; abort: AbortController } | null = null;
  private wanted = false;
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryMs: number;
  /** the last error that stopped the pipeline, by stage; superseded by the next segment */
  private lastError: { stage: PipelineStage; message: string; at: number } | null = null;
  private lastSegmentAt = Date.now();
  /** when the last attempt to open the source began (progress for the stall check, like a segment) */
  private attemptAt = 0;
  /** file sources: where to resume after a failure (seconds) */
  private resumeAtS = 0;
  /** stop() calls so far: a run that sees it change was stopped on purpose (even if start() came right after) */
  private stops = 0;
  /** the file `resumeAtS` belongs to, by path, size and mtime (another file, or one replaced at the same path,
   * starts from its beginning) */
  private resumeUri: string | null = null;
  private decodeLog = { at: 0, suppressed: 0 };

  constructor(private readonly o: SourceSupervisorOptions) {
    this.retryMs = o.retryMs ?? 1000;
  }

  /** A source process is open. */
  get capturing(): boolean {
    return this.source !== null;
  }
  /** The capture loop is running (segments flow). */
  get running(): boolean {
    return this.loop !== null;
  }
  get retrying(): boolean {
    return this.retryTimer !== null;
  }
  /** The source's frame rate while open. */
  get fps(): number | null {
    return this.source ? this.source.fps : null;
  }

  /** Start capturing; a source that fails (camera down, stream cut) is retried with backoff until stop(). */
  start(): void {
    if (this.closed) return; // the agent is stopping: nothing may start capture again (an MQTT command in flight)
    if (!this.wanted) this.lastSegmentAt = Date.now(); // (re)started on purpose: not stuck yet
    this.wanted = true;
    if (this.loop || this.retryTimer || this.opening) return;
    this.attemptAt = Date.now();
    const { source, segmentFrames } = this.o.settings();
    const abort = new AbortController();
    this.opening = { done: this.open(source, segmentFrames, abort.signal), abort };
  }

  /** Probe and open the source (async: the event loop keeps turning while a camera that is down times out), then run it. */
  private async open(s: SourceSettings, segmentFrames: number, signal: AbortSignal): Promise<void> {
    const log = this.o.logger;
    const key = s.kind === 'file' ? fileKey(s.uri) : null;
    const resumeS = s.kind === 'file' && key === this.resumeUri ? this.resumeAtS : 0;
    let src: FfmpegSource;
    try {
      src = await FfmpegSource.open({
        kind: s.kind, uri: s.uri, loop: s.loop, fps: s.fps ?? 10, width: s.width, height: s.height, realtime: s.kind === 'file',
        startS: resumeS || undefined,
        onDecodeError: (issue) => this.onDecodeIssue(s.uri, issue),
      }, { signal });
    } catch (e) {
      this.opening = null;
      if (!this.wanted || signal.aborted) return this.restartIfWanted(); // stopped while probing: not a failure of the source
      this.failures++;
      const message = redactUri((e as Error).message, s.uri);
      this.lastError = { stage: 'source', message, at: Date.now() };
      log.error({ component: 'capture', err: message, retryMs: this.retryMs }, 'cannot open source; retrying');
      this.scheduleRetry();
      return;
    }
    this.opening = null;
    if (!this.wanted || signal.aborted) return this.restartIfWanted(); // stopped while probing (no ffmpeg runs before iteration)
    if (resumeS) log.info({ component: 'capture', source: redactUri(s.uri), resumeS }, 'resuming the file where it stopped');
    this.attemptAt = Date.now(); // opened (probing can take seconds): the stall check counts from here
    this.source = src;
    this.o.onRunning?.(true);
    this.loop = this.run(src, s, segmentFrames, resumeS, key);
  }

  /** After a probe that stop() aborted: start() again if start() was called meanwhile (it found the probe in flight). */
  private restartIfWanted(): void {
    if (this.wanted) this.start();
  }

  /** `key`: the file's identity (fileKey) the resume point of this run belongs to; null for live sources. */
  private async run(src: FfmpegSource, s: SourceSettings, segmentFrames: number, resumeS: number, key: string | null): Promise<void> {
    let failed = false;
    let ended = false;
    let framesDone = 0;
    this.resumeUri = key;
    this.resumeAtS = resumeS;
    const stopsAtStart = this.stops;
    try {
      for await (const frames of readAhead(segments(src, segmentFrames))) {
        await this.o.onSegment(frames, src.fps);
        this.lastSegmentAt = Date.now();
        framesDone += frames.length;
        this.retryMs = this.o.retryMs ?? 1000;
        if (this.o.done?.()) {
          this.wanted = false;
          src.stop(); // ends the segment being read ahead
          break;
        }
      }
      const stoppedOnPurpose = this.stops !== stopsAtStart || !this.wanted;
      if (s.kind === 'file' && stoppedOnPurpose && !s.loop) {
        // stopped on purpose (restart_pipeline, a config change, stop_source): a restart continues where this run
        // stopped instead of sending the file again from its start under new segment ids
        this.resumeAtS = resumeS + framesDone / src.fps;
      } else if (s.kind === 'file') {
        this.resumeAtS = 0; // a clean end: the next start is from the beginning
        if (!s.loop && this.wanted) {
          // a file without loop that ended: capture is finished (not stuck: health and the watchdog stay fed)
          this.wanted = false;
          this.o.logger.info({ component: 'capture', source: redactUri(s.uri), frames: framesDone }, 'file source finished; capture stopped (loop: false)');
        }
      } else if (this.wanted) {
        // a live camera (RTSP, V4L2) whose ffmpeg ended cleanly (the camera closed the session): not an end, retry
        ended = true;
        const message = 'live stream ended (the camera closed the session?)';
        this.lastError = { stage: 'source', message, at: Date.now() };
        this.failures++;
        this.o.logger.error({ component: 'capture', source: redactUri(s.uri), err: message, frame: src.framesRead, retryMs: this.retryMs }, 'source failed; pipeline restarts');
      }
    } catch (e) {
      failed = true;
      const stage = e instanceof PipelineStageError ? e.stage : 'source';
      const message = redactUri(e instanceof PipelineStageError ? e.message.slice(stage.length + 2) : (e as Error).message, s.uri);
      this.lastError = { stage, message, at: Date.now() };
      if (stage === 'source') this.failures++;
      // resume after the frames already turned into segments (none of them is sent twice under a new id)
      if (s.kind === 'file') {
        if (framesDone > 0) this.resumeAtS = resumeS + framesDone / src.fps;
        // the segment failed after capture (a full store, the encoder): the file is not at its end, retry from the
        // same point (only a source that yields nothing after the resume point means the end of the file)
        else if (stage !== 'source') this.resumeAtS = resumeS;
        else if (resumeS > 0 && s.loop) this.resumeAtS = 0; // nothing after that point: a looped file starts over
        else if (resumeS > 0) {
          this.wanted = false; // nothing after that point and no loop: the file is done
          this.o.logger.error({ component: 'capture', source: redactUri(s.uri), atS: resumeS }, 'file source ends early (truncated?); capture finished');
        }
      }
      this.o.logger.error(
        { component: stage === 'source' ? 'capture' : stage, err: message, frame: src.framesRead, retryMs: this.retryMs, resumeS: this.resumeAtS || undefined },
        `${stage} failed; pipeline restarts`,
      );
    } finally {
      src.stop();
      this.o.onRunning?.(false);
      this.loop = null;
      this.source = null;
    }
    if (failed || ended) this.scheduleRetry();
    // a start() that came while this run was being stopped found it still running and did nothing: start now
    else if (this.stops !== stopsAtStart && this.wanted) this.start();
  }

  /** Log decoder complaints with their frame position: the first of a burst, then a count each second. */
  private onDecodeIssue(uri: string, issue: { frame: number; message: string }): void {
    this.decodeIssues++;
    const now = Date.now();
    if (now - this.decodeLog.at < 1000) {
      this.decodeLog.suppressed++;
      return;
    }
    this.o.logger.warn({ component: 'capture', source: redactUri(uri), frame: issue.frame, err: issue.message, more: this.decodeLog.suppressed || undefined }, 'decoder error in the source (damaged or truncated input)');
    this.decodeLog = { at: now, suppressed: 0 };
  }

  private scheduleRetry(): void {
    if (!this.wanted || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.wanted) this.start();
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, 60_000);
  }

  /** Stop for good (the agent stops): later start() calls, a queued command's or a retry's, do nothing. */
  async close(): Promise<void> {
    this.closed = true;
    await this.stop();
  }

  async stop(): Promise<void> {
    this.stops++;
    this.wanted = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.opening?.abort.abort();
    await this.opening?.done;
    this.source?.stop();
    await this.loop;
  }

  /** Stop and start again; `onlyIfWanted`: leave a stopped or finished source stopped (a config change). */
  async restart(onlyIfWanted = false): Promise<void> {
    const was = this.wanted;
    await this.stop();
    if (was || !onlyIfWanted) this.start();
  }

  /** Resolves when the capture loop ends (file end, done(), stop). */
  async finished(): Promise<void> {
    await this.opening?.done;
    await this.loop;
  }

  /**
   * What operators see (/healthz, status page): healthy unless a stage failed since the last segment or no
   * segment came for stallMs (only while wanted). `stage` names the failing stage ('pipeline' for a stall);
   * `reason` is the detail, with source credentials redacted. A source that is down is unhealthy here even
   * while a retry is scheduled; whether the process is stuck is stuck()'s question.
   */
  health(stallMs: number): { ok: boolean; reason?: string; stage?: PipelineStage | 'pipeline' } {
    if (!this.wanted) return { ok: true };
    const e = this.lastError;
    if (e && e.at >= this.lastSegmentAt) return { ok: false, stage: e.stage, reason: `${e.stage}: ${e.message}` };
    const quietMs = Date.now() - this.lastSegmentAt;
    if (quietMs > stallMs) return { ok: false, stage: 'pipeline', reason: `pipeline stuck: no segment for ${Math.round(quietMs / 1000)} s` };
    return { ok: true };
  }

  /**
   * Whether the supervisor is stuck (what the systemd watchdog is fed on): wanted, no retry scheduled, and
   * neither a segment nor an attempt to open the source for stallMs (e.g. capture open but no frames, or a
   * segment that never finishes processing, or a source that ended with nothing to restart it).
   * A source that is down with a retry scheduled is recovering, not stuck: restarting the process cannot
   * bring a camera back. Returns the reason, or null.
   */
  stuck(stallMs: number): string | null {
    if (!this.wanted) return null;
    if (this.retryTimer) {
      // retrying heals a camera that is down, not an encoder that keeps failing (e.g. a leaked hardware encoder
      // session): failing for stallMs without a segment, that one needs the process restarted. (A store failure
      // is usually a full disk, which a restart does not fix: it would only end in systemd's start limit.)
      const e = this.lastError;
      const quietMs = Date.now() - this.lastSegmentAt;
      if (e && e.stage === 'encoder' && e.at >= this.lastSegmentAt && quietMs > stallMs) return `encoder failing for ${Math.round(quietMs / 1000)} s: ${e.message}`;
      return null;
    }
    const quietMs = Date.now() - Math.max(this.lastSegmentAt, this.attemptAt);
    if (quietMs <= stallMs) return null;
    const what = this.loop ? 'capture open' : this.opening ? 'opening the source' : 'no capture and no retry scheduled';
    return `pipeline stuck: no segment for ${Math.round(quietMs / 1000)} s (${what})`;
  }
}
