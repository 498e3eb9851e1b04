"""Generated per-camera event logs and multi-chunk questions for the CacheBlend model.

A *chunk* is one camera's event log for one 10-minute window, written the way the server's summariser
(`cacheblend/eventlog.ts`) writes detector output: per minute, how many objects of a class entered or left the
view. Objects move between cameras (a truck passes gate 1, then dock 3), so the logs of different cameras are
correlated, and every question needs two or more chunks to answer (which cameras saw X, which saw X first /
last, where X went after camera C).

Held out for evaluation: camera names (site+number pairs never used in training), the random seed (times,
traffic) and one paraphrase per question type (`EVAL_TEMPLATES`, whose words all occur in training text).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass

CLASSES = ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
SITES = ["gate", "dock", "lobby", "yard", "road", "lot", "door", "ramp", "bay", "hall", "cam"]
DIGITS = [str(i) for i in range(1, 10)]
HOURS = [f"{h:02d}" for h in range(24)]
MINUTES = [f":{m:02d}" for m in range(60)]
COUNTS = [str(i) for i in range(1, 10)]  # shared with DIGITS
WORDS = ("log camera from to . , enter leave nothing question answer : ? which cameras camera saw a the first last "
         "where did go after list that appear appeared seen was were to see it next left none has have of "
         "and went").split()
SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]

TRAIN_TEMPLATES = {
    "which": ["which cameras saw a {cls} ?", "list the cameras that saw a {cls} ?", "which cameras have seen a {cls} ?"],
    "first": ["which camera saw a {cls} first ?", "where did a {cls} appear first ?", "where was a {cls} seen first ?"],
    "after": ["where did the {cls} go after {cam} ?", "after {cam} where did the {cls} go ?", "the {cls} left {cam} , where did it go ?"],
    "last": ["which camera saw a {cls} last ?", "where did a {cls} appear last ?", "where was a {cls} seen last ?"],
}
EVAL_TEMPLATES = {
    "which": ["where was a {cls} seen ?"],
    "first": ["first camera to see a {cls} ?"],
    "after": ["the {cls} left {cam} , where did it go next ?"],
    "last": ["last camera to see a {cls} ?"],
}


def vocabulary() -> list[str]:
    words = SPECIAL + WORDS + CLASSES + SITES + DIGITS + HOURS + MINUTES
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    return list(seen)


ALL_CAMERAS = [f"{s} {d}" for s in SITES for d in DIGITS]
_rng_split = random.Random(1234)
EVAL_CAMERAS = sorted(_rng_split.sample([c for c in ALL_CAMERAS if not c.startswith("cam ")], 16))
TRAIN_CAMERAS = [c for c in ALL_CAMERAS if c not in EVAL_CAMERAS]


@dataclass
class Event:
    t: int  # minutes since midnight
    n: int
    cls: str
    kind: str  # enter | leave


def fmt_time(t: int) -> str:
    t %= 24 * 60
    return f"{t // 60:02d} :{t % 60:02d}"


def chunk_text(camera: str, start: int, minutes: int, events: list[Event]) -> str:
    """One camera's log for [start, start+minutes): the format the server's summariser also writes."""
    parts = [f"camera {camera} from {fmt_time(start)} to {fmt_time(start + minutes)} ."]
    if not events:
        parts.append("nothing .")
    for e in sorted(events, key=lambda e: (e.t, CLASSES.index(e.cls), e.kind)):
        parts.append(f"{fmt_time(e.t)} {e.n} {e.cls} {e.kind} .")
    return " ".join(parts)


@dataclass
class Scene:
    cameras: list[str]
    start: int
    windows: int
    events: dict[str, list[Event]]  # per camera

    def chunks(self) -> list[dict]:
        out = []
        for cam in self.cameras:
            for w in range(self.windows):
                s = self.start + 10 * w
                evs = [e for e in self.events[cam] if s <= e.t < s + 10]
                out.append({"camera": cam, "start": s, "text": chunk_text(cam, s, 10, evs)})
        return out


def simulate(rng: random.Random, cameras_pool: list[str], size: tuple[int, int, int, int] = (4, 6, 3, 3)) -> Scene:
    """size = (min cameras, max cameras, min windows, max windows); evaluation uses the default."""
    k = rng.randint(size[0], size[1])
    windows = rng.randint(size[2], size[3])
    cameras = rng.sample(cameras_pool, k)
    start = rng.randrange(0, 24 * 6) * 10
    span = windows * 10
    raw: dict[str, list[tuple[int, str, str]]] = {c: [] for c in cameras}
    # movers: one object passing through 2-3 cameras in order
    for _ in range(rng.randint(k - 1, k + 1)):
        cls = rng.choice(CLASSES)
        path = rng.sample(cameras, rng.randint(2, min(3, k)))
        t = start + rng.randrange(0, span // 2)
        for cam in path:
            if t >= start + span:
                break
            dwell = rng.randint(0, 3)
            raw[cam].append((t, cls, "enter"))
            if t + dwell < start + span:
                raw[cam].append((t + dwell, cls, "leave"))
            t += dwell + rng.randint(1, 5)
    # local traffic: objects that come and go at one camera
    for cam in cameras:
        for _ in range(rng.randint(1, 6)):
            cls = rng.choices(CLASSES, weights=[4, 1, 3, 1, 1, 1])[0]
            t = start + rng.randrange(0, span)
            raw[cam].append((t, cls, "enter"))
            d = rng.randint(0, 4)
            if t + d < start + span:
                raw[cam].append((t + d, cls, "leave"))
    events: dict[str, list[Event]] = {}
    for cam, lst in raw.items():
        agg: dict[tuple[int, str, str], int] = {}
        for t, cls, kind in lst:
            agg[(t, cls, kind)] = agg.get((t, cls, kind), 0) + 1
        events[cam] = [Event(t, min(n, 9), cls, kind) for (t, cls, kind), n in agg.items()]
    return Scene(cameras, start, windows, events)


def answers(scene: Scene, min_cams: int = 2) -> list[tuple[str, dict, str]]:
    """(type, slots, answer) for every question this scene answers unambiguously with >= 2 chunks.

    min_cams=1 (the training curriculum's easy stage) also asks which / first / last about a class that only one
    camera saw: the answer is then read from one place in the context (the camera heading the chunk with the class).
    """
    out = []
    enters: dict[str, list[tuple[int, str]]] = {c: [] for c in CLASSES}
    for cam in scene.cameras:
        for e in scene.events[cam]:
            if e.kind == "enter":
                enters[e.cls].append((e.t, cam))
    for cls, lst in enters.items():
        cams = [c for c in scene.cameras if any(cc == c for _, cc in lst)]
        if len(cams) < max(1, min_cams):
            continue
        out.append(("which", {"cls": cls}, " ".join(cams)))
        times = sorted(lst)
        if len(cams) == 1:
            out.append(("first", {"cls": cls}, cams[0]))
            out.append(("last", {"cls": cls}, cams[0]))
            continue
        if times[0][0] < times[1][0]:
            out.append(("first", {"cls": cls}, times[0][1]))
        if times[-1][0] > times[-2][0]:
            out.append(("last", {"cls": cls}, times[-1][1]))
    for cam in scene.cameras:
        for e in scene.events[cam]:
            if e.kind != "leave":
                continue
            # the first leave of this class at this camera
            if any(o.kind == "leave" and o.cls == e.cls and o.t < e.t for o in scene.events[cam]):
                continue
            later = sorted((t, c) for t, c in enters[e.cls] if t >= e.t and c != cam)
            if not later or (len(later) > 1 and later[0][0] == later[1][0]):
                continue
            out.append(("after", {"cls": e.cls, "cam": cam}, later[0][1]))
    return out


def make_example(rng: random.Random, cameras_pool: list[str], templates: dict[str, list[str]], n_questions: int,
                 size: tuple[int, int, int, int] = (4, 6, 3, 3), min_cams: int = 2) -> dict | None:
    scene = simulate(rng, cameras_pool, size)
    qa = answers(scene, min_cams)
    if not qa:
        return None
    rng.shuffle(qa)
    # balance types: prefer distinct types first
    by_type: dict[str, list] = {}
    for item in qa:
        by_type.setdefault(item[0], []).append(item)
    picked = []
    types = list(by_type)
    rng.shuffle(types)
    while len(picked) < n_questions and any(by_type.values()):
        for t in types:
            if by_type[t] and len(picked) < n_questions:
                picked.append(by_type[t].pop())
    questions = []
    for typ, slots, ans in picked:
        tmpl = rng.choice(templates[typ])
        questions.append({"type": typ, "question": tmpl.format(**slots), "answer": ans, "template": tmpl})
    return {"chunks": scene.chunks(), "questions": questions}


PREFIX = "<bos> log :"


def prompt_text(chunks: list[dict], question: str) -> str:
    return " ".join([PREFIX] + [c["text"] for c in chunks] + [f"question : {question} answer :"])


def tokenize(text: str, vocab: dict[str, int]) -> list[int]:
    return [vocab.get(w, vocab["<unk>"]) for w in text.split()]


def check_templates() -> None:
    train_words = set(w for ts in TRAIN_TEMPLATES.values() for t in ts for w in t.split())
    for ts in EVAL_TEMPLATES.values():
        for t in ts:
            for w in t.split():
                if not w.startswith("{") and w not in train_words and w not in WORDS:
                    raise SystemExit(f"eval template word {w!r} never in training templates")
    v = set(vocabulary())
    for ts in list(TRAIN_TEMPLATES.values()) + list(EVAL_TEMPLATES.values()):
        for t in ts:
            for w in t.split():
                if not w.startswith("{") and w not in v:
                    raise SystemExit(f"template word {w!r} not in vocabulary")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="write the held-out evaluation set (JSON lines) and the vocabulary")
    ap.add_argument("--eval-out", default="training/cacheblend/questions/eval.jsonl")
    ap.add_argument("--vocab-out", default="training/cacheblend/questions/vocab.json")
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--seed", type=int, default=99)
    a = ap.parse_args()
    check_templates()
    import os

    os.makedirs(os.path.dirname(a.eval_out), exist_ok=True)
    vocab = vocabulary()
    with open(a.vocab_out, "w") as f:
        json.dump(vocab, f)
    rng = random.Random(a.seed)
    n = 0
    with open(a.eval_out, "w") as f:
        while n < a.n:
            # half the questions use the training phrasings (on held-out cameras/times), half held-out phrasings
            held = n % 2 == 1
            ex = make_example(rng, EVAL_CAMERAS, EVAL_TEMPLATES if held else TRAIN_TEMPLATES, 1)
            if ex is None:
                continue
            q = ex["questions"][0]
            f.write(json.dumps({"id": n, "chunks": ex["chunks"], "question": q["question"], "answer": q["answer"], "type": q["type"],
                                "heldout_template": held}) + "\n")
            n += 1
    print(f"wrote {n} eval questions to {a.eval_out}, vocabulary of {len(vocab)} words to {a.vocab_out}")
