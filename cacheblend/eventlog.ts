/**
 * The server's detections as text chunks: one chunk per camera and 10-minute window (UTC), in the words the
 * CacheBlend model was trained on (training/cacheblend/eventlog.py, chunk_text):
 *
 *   camera gate 1 from 14 :00 to 14 :10 . 14 :02 1 truck enter . 14 :05 1 truck leave .
 *
 * Per segment, the count of each road class is the largest number of detections (score ≥ MIN_SCORE) in any of its
 * frames; when a camera's count of a class rises from one segment to the next, that many "enter" at the segment's
 * minute, when it falls, "leave". Windows in which a camera sent segments but nothing changed read "nothing .";
 * windows without segments produce no chunk (no data is not "nothing").
 */
export const EVENT_CLASSES = ['person', 'bicycle', 'car', 'motorcycle', 'bus', 'truck'] as const;
/** COCO class id → event word (the detector's road classes; train is not in the model's vocabulary) */
const COCO_TO_EVENT = new Map<number, (typeof EVENT_CLASSES)[number]>([
  [0, 'person'],
  [1, 'bicycle'],
  [2, 'car'],
  [3, 'motorcycle'],
  [5, 'bus'],
  [7, 'truck'],
]);
export const MIN_SCORE = 0.5;
export const WINDOW_MIN = 10;
export const SITES = ['gate', 'dock', 'lobby', 'yard', 'road', 'lot', 'door', 'ramp', 'bay', 'hall', 'cam'] as const;

export interface SegmentEvents {
  cameraId: string;
  capturedAt: number; // ms since epoch
  /** per frame: [x1, y1, x2, y2, score, classId] */
  detections: readonly (readonly (readonly number[])[])[];
}

export interface Chunk {
  cameraId: string;
  camera: string; // the name in the text
  start: number; // window start, ms since epoch
  end: number;
  text: string;
}

interface Event {
  minute: number; // minutes since epoch
  n: number;
  cls: number; // index in EVENT_CLASSES
  kind: 'enter' | 'leave';
}

const pad = (v: number): string => String(v).padStart(2, '0');
/** "14 :02" for a minute since the epoch (UTC) */
export function fmtMinute(minute: number): string {
  const m = ((minute % 1440) + 1440) % 1440;
  return `${pad(Math.floor(m / 60))} :${pad(m % 60)}`;
}

/**
 * Names the model can read: an id like "gate-1", "dock_3" or "lobby 2" keeps its name; any other id becomes
 * "cam k" (k = 1..9 in sorted order of such ids; the rest share "cam 9").
 */
export function cameraNames(ids: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  let k = 1;
  for (const id of [...new Set(ids)].sort()) {
    const m = /^([a-z]+)[-_ ]?([1-9])$/i.exec(id.trim());
    if (m && (SITES as readonly string[]).includes(m[1].toLowerCase()) && m[1].toLowerCase() !== 'cam') out.set(id, `${m[1].toLowerCase()} ${m[2]}`);
    else out.set(id, `cam ${Math.min(k++, 9)}`);
  }
  return out;
}

function counts(dets: SegmentEvents['detections']): number[] {
  const best = new Array<number>(EVENT_CLASSES.length).fill(0);
  for (const frame of dets) {
    const c = new Array<number>(EVENT_CLASSES.length).fill(0);
    for (const d of frame) {
      const cls = COCO_TO_EVENT.get(d[5]);
      if (cls && d[4] >= MIN_SCORE) c[EVENT_CLASSES.indexOf(cls)]++;
    }
    c.forEach((v, i) => (best[i] = Math.max(best[i], v)));
  }
  return best;
}

/** Chunks of every camera and window, ordered by camera name then time. */
export function summarise(segments: readonly SegmentEvents[]): Chunk[] {
  const names = cameraNames(segments.map((s) => s.cameraId));
  const byCam = new Map<string, SegmentEvents[]>();
  for (const s of segments) byCam.set(s.cameraId, [...(byCam.get(s.cameraId) ?? []), s]);
  const chunks: Chunk[] = [];
  for (const [cameraId, segs] of byCam) {
    segs.sort((a, b) => a.capturedAt - b.capturedAt);
    const events = new Map<string, Event>();
    const windows = new Set<number>();
    let prev = new Array<number>(EVENT_CLASSES.length).fill(0);
    for (const s of segs) {
      const minute = Math.floor(s.capturedAt / 60_000);
      windows.add(Math.floor(minute / WINDOW_MIN) * WINDOW_MIN);
      const cur = counts(s.detections);
      cur.forEach((c, cls) => {
        const d = c - prev[cls];
        if (d === 0) return;
        const kind = d > 0 ? 'enter' : 'leave';
        const key = `${minute}|${cls}|${kind}`;
        const e = events.get(key) ?? { minute, n: 0, cls, kind };
        e.n += Math.abs(d);
        events.set(key, e);
      });
      prev = cur;
    }
    const name = names.get(cameraId)!;
    for (const w of [...windows].sort((a, b) => a - b)) {
      const evs = [...events.values()].filter((e) => e.minute >= w && e.minute < w + WINDOW_MIN).sort((a, b) => a.minute - b.minute || a.cls - b.cls || a.kind.localeCompare(b.kind));
      const parts = [`camera ${name} from ${fmtMinute(w)} to ${fmtMinute(w + WINDOW_MIN)} .`];
      if (evs.length === 0) parts.push('nothing .');
      for (const e of evs) parts.push(`${fmtMinute(e.minute)} ${Math.min(e.n, 9)} ${EVENT_CLASSES[e.cls]} ${e.kind} .`);
      chunks.push({ cameraId, camera: name, start: w * 60_000, end: (w + WINDOW_MIN) * 60_000, text: parts.join(' ') });
    }
  }
  return chunks.sort((a, b) => a.camera.localeCompare(b.camera) || a.start - b.start);
}

/**
 * The chunks a question is asked over: the last `windows` windows that have data, at most `maxCameras` cameras
 * (the most active), within `maxTokens` words (the model saw contexts up to ~750). Ordered by camera, then time.
 */
export function selectChunks(chunks: readonly Chunk[], o: { windows?: number; maxCameras?: number; maxTokens?: number } = {}): Chunk[] {
  const windows = o.windows ?? 3;
  const starts = [...new Set(chunks.map((c) => c.start))].sort((a, b) => b - a).slice(0, windows);
  let sel = chunks.filter((c) => starts.includes(c.start));
  const activity = new Map<string, number>();
  for (const c of sel) activity.set(c.cameraId, (activity.get(c.cameraId) ?? 0) + c.text.split(' ').length);
  const cams = [...activity.entries()].sort((a, b) => b[1] - a[1]).slice(0, o.maxCameras ?? 6).map(([id]) => id);
  sel = sel.filter((c) => cams.includes(c.cameraId));
  const budget = o.maxTokens ?? 700;
  const out: Chunk[] = [];
  let used = 0;
  // newest windows first when trimming to the budget
  for (const c of [...sel].sort((a, b) => b.start - a.start)) {
    const n = c.text.split(' ').length;
    if (used + n > budget) continue;
    out.push(c);
    used += n;
  }
  return out.sort((a, b) => a.camera.localeCompare(b.camera) || a.start - b.start);
}
