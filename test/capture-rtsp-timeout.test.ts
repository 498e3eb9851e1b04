/**
 * RTSP socket timeout by FFmpeg version, and a probe that does not block the event loop:
 *  - FFmpeg < 5 (libavformat 58: the Jetsons' 4.2/4.4): `-timeout` is the RTSP *listen* timeout (seconds, listen
 *    mode: ffmpeg binds the camera's address); the socket timeout is `-stimeout`. FFmpeg ≥ 5: `-timeout`.
 *  - probeSource() runs ffprobe as an async child: a camera that accepts the connection and never answers costs
 *    the probe its timeout, not the agent's event loop (uplink, MQTT, status page, watchdog); the rejection is a
 *    CaptureError without the camera's password.
 */
import net from 'node:net';
import { CaptureError, FfmpegSource, ffmpegVersion, inputArgs, parseFfmpegVersion, probeArgs, probeSource, rtspTimeoutOption, type FfmpegVersion } from '../media/capture.ts';

const FIRST_LINES: [string, FfmpegVersion][] = [
  ['ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021 the FFmpeg developers', { major: 4, libavformat: null }],
  ['ffmpeg version 4.2.7-0ubuntu0.1 Copyright (c) 2000-2022 the FFmpeg developers', { major: 4, libavformat: null }],
  ['ffmpeg version 5.1.8-0+deb12u1 Copyright (c) 2000-2025 the FFmpeg developers', { major: 5, libavformat: null }],
  ['ffmpeg version n6.1 Copyright (c) 2000-2023 the FFmpeg developers', { major: 6, libavformat: null }],
  ['ffmpeg version 7.0.2-static https://johnvansickle.com/ffmpeg/  Copyright (c) 2000-2024 the FFmpeg developers', { major: 7, libavformat: null }],
  ['ffmpeg version N-112345-gabcdef0123 Copyright (c) 2000-2023 the FFmpeg developers', { major: null, libavformat: null }],
];

describe('parseFfmpegVersion', () => {
  test.each(FIRST_LINES)('%s', (line, want) => {
    expect(parseFfmpegVersion(line)).toEqual(want);
  });

  test('libavformat from the full `ffmpeg -version` output (decides for git snapshots too)', () => {
    const jetson = 'ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021 the FFmpeg developers\nbuilt with gcc 11 (Ubuntu 11.2.0-19ubuntu1)\nconfiguration: --prefix=/usr\nlibavutil      56. 70.100 / 56. 70.100\nlibavcodec     58.134.100 / 58.134.100\nlibavformat    58. 76.100 / 58. 76.100\n';
    expect(parseFfmpegVersion(jetson)).toEqual({ major: 4, libavformat: 58 });
    const git = 'ffmpeg version N-112345-gabcdef0123 Copyright (c) 2000-2023 the FFmpeg developers\nlibavformat    60. 16.100 / 60. 16.100\n';
    expect(parseFfmpegVersion(git)).toEqual({ major: null, libavformat: 60 });
    const oldGit = 'ffmpeg version N-98000-g1234567 Copyright (c) 2000-2020 the FFmpeg developers\nlibavformat    58. 45.100 / 58. 45.100\n';
    expect(rtspTimeoutOption(parseFfmpegVersion(oldGit))).toBe('-stimeout');
  });
});

describe('RTSP timeout option', () => {
  const spec = { kind: 'rtsp' as const, uri: 'rtsp://admin:pw@10.0.0.5:554/stream', timeoutMs: 5000 };
  const v4 = parseFfmpegVersion('ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021 the FFmpeg developers');
  const v5 = parseFfmpegVersion('ffmpeg version 5.1.8-0+deb12u1 Copyright (c) 2000-2025 the FFmpeg developers');

  test('FFmpeg 4.x: -stimeout (µs), never -timeout (listen mode there)', () => {
    expect(rtspTimeoutOption(v4)).toBe('-stimeout');
    expect(inputArgs(spec, v4)).toEqual(['-rtsp_transport', 'tcp', '-stimeout', '5000000', '-i', spec.uri]);
    expect(probeArgs(spec, v4)).toEqual(['-v', 'error', '-rtsp_transport', 'tcp', '-stimeout', '5000000', '-select_streams', 'v:0', '-show_entries', 'stream=width,height,r_frame_rate', '-of', 'csv=p=0', spec.uri]);
    expect(inputArgs(spec, v4)).not.toContain('-timeout');
  });

  test('FFmpeg 5+ (and an unreadable version): -timeout (µs)', () => {
    expect(inputArgs(spec, v5)).toEqual(['-rtsp_transport', 'tcp', '-timeout', '5000000', '-i', spec.uri]);
    expect(probeArgs(spec, v5)).toContain('-timeout');
    expect(probeArgs(spec, v5)).not.toContain('-stimeout');
    expect(rtspTimeoutOption(parseFfmpegVersion('ffmpeg version n6.1 Copyright'))).toBe('-timeout');
    expect(rtspTimeoutOption({ major: null, libavformat: null })).toBe('-timeout');
    expect(rtspTimeoutOption(null)).toBe('-timeout');
    expect(rtspTimeoutOption({ major: 4, libavformat: 59 })).toBe('-timeout'); // libavformat decides
  });

  test('file and V4L2 sources have no timeout option', () => {
    expect(inputArgs({ kind: 'file', uri: '/v.mp4', loop: true }, v4)).toEqual(['-stream_loop', '-1', '-i', '/v.mp4']);
    expect(inputArgs({ kind: 'v4l2', uri: '/dev/video0' }, v4)).toEqual(['-f', 'v4l2', '-i', '/dev/video0']);
  });

  test('the installed ffmpeg is detected once (cached)', async () => {
    const v = await ffmpegVersion();
    expect(v).not.toBeNull();
    expect(v!.major ?? v!.libavformat).not.toBeNull();
    expect(await ffmpegVersion()).toBe(v);
  });
});

describe('probeSource is async', () => {
  const PASSWORD = 'S3cretPa55';

  test('a camera that accepts and never answers: the event loop keeps turning, then a redacted CaptureError', async () => {
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => void sockets.push(s)); // accepts the RTSP connection, never replies
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const uri = `rtsp://admin:${PASSWORD}@127.0.0.1:${port}/stream`;
    await ffmpegVersion(); // detected before timing (cached by the agent's first probe)
    let ticks = 0;
    const timer = setInterval(() => ticks++, 50);
    const t0 = Date.now();
    try {
      const p = probeSource({ kind: 'rtsp', uri, timeoutMs: 1500 });
      expect(p).toBeInstanceOf(Promise); // returns at once (spawnSync used to block here for up to timeoutMs + 2 s)
      const err = await p.then(() => null, (e: unknown) => e);
      const ms = Date.now() - t0;
      expect(ms).toBeGreaterThan(1000); // it did wait for the camera…
      expect(ticks).toBeGreaterThanOrEqual(Math.floor(ms / 50) * 0.5); // …while timers kept firing
      expect(err).toBeInstanceOf(CaptureError);
      const e = err as CaptureError;
      expect(e.message).toMatch(/^capture rtsp:\/\/\*\*\*@127\.0\.0\.1:\d+\/stream: cannot open video stream: \S/);
      expect(e.message).not.toContain(PASSWORD);
      expect(e.source).not.toContain(PASSWORD);
      expect(sockets.length).toBeGreaterThan(0); // ffprobe connected to the camera (not listen mode)
    } finally {
      clearInterval(timer);
      for (const s of sockets) s.destroy();
      server.close();
    }
  });

  test('FfmpegSource.open probes asynchronously and rejects like the constructor throws', async () => {
    await expect(FfmpegSource.open({ kind: 'file', uri: '/nonexistent/cam.mp4' })).rejects.toThrow(/\/nonexistent\/cam.mp4: file not found/);
    await expect(FfmpegSource.open({ kind: 'rtsp', uri: `rtsp://u:${PASSWORD}@127.0.0.1:1/stream`, timeoutMs: 2000 })).rejects.toThrow(/cannot open video stream/);
    await expect(probeSource({ kind: 'rtsp', uri: 'http://x' })).rejects.toBeInstanceOf(CaptureError);
  });

  test('an aborted probe kills ffprobe and rejects at once', async () => {
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => void sockets.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const ac = new AbortController();
      const t0 = Date.now();
      const p = probeSource({ kind: 'rtsp', uri: `rtsp://127.0.0.1:${port}/x`, timeoutMs: 20_000 }, { signal: ac.signal });
      setTimeout(() => ac.abort(), 300);
      await expect(p).rejects.toThrow(/cannot open video stream: ffprobe aborted/);
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      for (const s of sockets) s.destroy();
      server.close();
    }
  });
});
