"""Human preference between model versions: a blind side-by-side vote page, votes in SQLite, Elo ratings from them.

The paper ranked its data-curation ablations by human preference turned into Elo scores; this module is that
protocol at local scale.

Input: a folder with one sub-folder per model version, each holding mp4 samples and a `prompts.json` manifest in the
shape `svd train` writes next to its samples (`write_samples`): {"file.mp4": "prompt", ...}, or a list of
{"file": ..., "prompt": ...}. Files are relative to their version folder and must stay inside it. A pair is two
videos of two different versions for the same prompt.

The page (`create_app`, served by `serve`) shows the prompt and the two videos; videos are addressed by random ids
and the left/right order is drawn per pair, so neither the page nor its URLs tell which version is which. A vote
posts the pair's one-time token and the choice; the server knows what the token stood for and stores one row:
version_a/file_a is the video that was shown on the LEFT, version_b/file_b the right one, outcome is 'a', 'b' or
'tie'. Keeping the side in the row lets position bias be measured later.

Elo (`elo`, `elo_bootstrap`, `elo_report`): the standard sequential update over the votes in time order, and, as
sequential Elo depends on the order of games, a seeded bootstrap (votes resampled with replacement, which also
shuffles their order) giving a median and a 95% interval per version.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' (locally imported) Request type at runtime
import html
import json
import random
import re
import secrets
import sqlite3
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from svd.errors import InputError

MANIFEST = "prompts.json"
OUTCOMES = {"left": "a", "right": "b", "tie": "tie"}  # what the page posts -> what the table stores
SCORE_A = {"a": 1.0, "b": 0.0, "tie": 0.5}
MAX_PENDING = 10_000  # pairs shown but not yet voted on, kept in memory; the oldest are forgotten first
VOTER_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
COLUMNS = ("id", "ts", "prompt", "version_a", "version_b", "file_a", "file_b", "outcome", "voter")

SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,                 -- ISO-8601 UTC, microseconds
    prompt TEXT NOT NULL,
    version_a TEXT NOT NULL,          -- shown on the left
    version_b TEXT NOT NULL,          -- shown on the right
    file_a TEXT NOT NULL,             -- relative to the videos folder
    file_b TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('a', 'b', 'tie')),
    voter TEXT NOT NULL
)
"""


# ---------------------------------------------------------------- the videos


@dataclass(frozen=True)
class Video:
    version: str
    file: str  # relative to the videos folder: "<version>/<name>.mp4"
    prompt: str
    path: Path  # resolved, checked to lie inside the videos folder


@dataclass(frozen=True)
class Pair:
    prompt: str
    left: Video
    right: Video


class Catalog:
    """The sample videos of every model version, and which prompts two versions share."""

    def __init__(self, root: Path, videos: list[Video]):
        self.root = root
        self.videos = videos
        self.by_prompt: dict[str, dict[str, list[Video]]] = defaultdict(lambda: defaultdict(list))
        for v in videos:
            self.by_prompt[v.prompt][v.version].append(v)
        self.versions = sorted({v.version for v in videos})
        # unordered version pair -> prompts both versions have videos for
        self.shared: dict[tuple[str, str], list[str]] = {}
        for prompt, per in sorted(self.by_prompt.items()):
            names = sorted(per)
            for i, a in enumerate(names):
                for b in names[i + 1 :]:
                    self.shared.setdefault((a, b), []).append(prompt)


def _manifest_rows(path: Path) -> list[tuple[Any, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON manifest ({exc.__class__.__name__})") from None
    if isinstance(data, dict):
        return list(data.items())
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return [(r.get("file"), r.get("prompt")) for r in data]
    raise InputError(f'{path}: expected {{"file.mp4": "prompt"}} or a list of {{"file", "prompt"}} objects')


def load_catalog(folder: Path | str, check_videos: bool = True) -> Catalog:
    """Read FOLDER/<version>/prompts.json for every version folder; every listed file must be an mp4 inside FOLDER.

    check_videos: open each file's container (PyAV probe) so a broken sample fails here, not in a voter's browser.
    """
    from svd.io.video import VideoReadError, probe

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--videos {folder}: not a folder (expected one sub-folder of samples per model version)")
    root = folder.resolve()
    videos: list[Video] = []
    seen: set[Path] = set()
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        manifest = sub / MANIFEST
        if not manifest.is_file():
            raise InputError(f"{sub}: no {MANIFEST} (map each sample file to its prompt, as `svd train` writes it)")
        for name, prompt in _manifest_rows(manifest):
            if not isinstance(name, str) or not name or not isinstance(prompt, str) or not prompt.strip():
                raise InputError(
                    f"{manifest}: each entry needs a file name and a non-empty prompt, got {name!r}: {prompt!r}"
                )
            rel = Path(name)
            if rel.is_absolute() or ".." in rel.parts:
                raise InputError(f"{manifest}: {name!r} must be a path inside {sub}")
            if rel.suffix.lower() != ".mp4":
                raise InputError(f"{manifest}: {name!r} is not an .mp4 file")
            path = (sub / rel).resolve()
            # a symlink may still lead out of the folder; the server only ever serves what lies inside it
            if not path.is_relative_to(root):
                raise InputError(f"{manifest}: {name!r} resolves outside {folder}")
            if not path.is_file():
                raise InputError(f"{manifest}: {name!r} not found in {sub}")
            if path in seen:  # one video, one prompt: a second entry would be a vote on an unclear question
                raise InputError(f"{manifest}: {name!r} is listed more than once")
            seen.add(path)
            if check_videos:
                try:
                    probe(path)
                except VideoReadError as exc:
                    raise InputError(f"{sub / rel}: {exc}") from None
            videos.append(Video(sub.name, f"{sub.name}/{rel.as_posix()}", " ".join(prompt.split()), path))
    catalog = Catalog(folder, videos)
    if len(catalog.versions) < 2:
        raise InputError(
            f"--videos {folder}: found {len(catalog.versions)} model version folder(s) with samples; "
            f"a comparison needs at least two"
        )
    if not catalog.shared:
        raise InputError(
            f"--videos {folder}: no prompt has samples from two model versions; sample the same prompts "
            f"with each version"
        )
    return catalog


# ---------------------------------------------------------------- the vote database


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _check_schema(con: sqlite3.Connection, db: Path) -> None:
    cols = {row[1] for row in con.execute("PRAGMA table_info(votes)")}
    if not cols:
        raise InputError(
            f"{db}: not a preference database (no votes table); collect votes with `svd evaluate preference-serve`"
        )
    missing = [c for c in COLUMNS if c not in cols]
    if missing:
        raise InputError(f"{db}: the votes table lacks column(s) {', '.join(missing)}; not a preference database")


def init_db(db: Path | str) -> Path:
    """Create the votes table (and the folder) if needed; an existing file must be a preference database."""
    db = Path(db)
    if db.is_dir():
        raise InputError(f"--db {db}: is a folder, expected an SQLite file")
    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = sqlite3.connect(db)
        try:
            with con:
                con.execute(SCHEMA)
            _check_schema(con, db)
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise InputError(f"--db {db}: not a usable SQLite database ({exc})") from None
    return db


def record_vote(db: Path, pair: Pair, outcome: str, voter: str) -> int:
    """Store one vote (outcome 'a' = left, 'b' = right, 'tie'); returns its row id."""
    if outcome not in SCORE_A:
        raise ValueError(f"outcome must be one of {', '.join(SCORE_A)}, got {outcome!r}")
    con = sqlite3.connect(db, timeout=10)
    try:
        with con:
            cur = con.execute(
                "INSERT INTO votes (ts, prompt, version_a, version_b, file_a, file_b, outcome, voter) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _now(),
                    pair.prompt,
                    pair.left.version,
                    pair.right.version,
                    pair.left.file,
                    pair.right.file,
                    outcome,
                    voter,
                ),
            )
        return int(cur.lastrowid)
    finally:
        con.close()


def read_votes(db: Path | str) -> list[dict]:
    """Every vote in time order; a missing, corrupt or foreign file, an empty table or a bad row is an InputError."""
    db = Path(db)
    if not db.is_file():
        raise InputError(f"--db {db}: no such file; collect votes with `svd evaluate preference-serve` first")
    try:
        # read-only, so pointing --db at the wrong file never creates or alters anything
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            _check_schema(con, db)
            rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM votes ORDER BY ts, id").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise InputError(f"--db {db}: not a readable SQLite database ({exc})") from None
    if not rows:
        raise InputError(f"--db {db}: no votes yet; collect some with `svd evaluate preference-serve`")
    votes = [dict(zip(COLUMNS, r)) for r in rows]
    for v in votes:
        if v["outcome"] not in SCORE_A or not v["version_a"] or not v["version_b"] or v["version_a"] == v["version_b"]:
            raise InputError(
                f"--db {db}: vote id {v['id']} is malformed (outcome {v['outcome']!r}, versions "
                f"{v['version_a']!r} vs {v['version_b']!r})"
            )
    return votes


def pair_counts(db: Path) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str, str], int]]:
    """Votes per unordered version pair and per (pair, prompt), so a restarted server keeps spreading comparisons."""
    per_pair: dict[tuple[str, str], int] = defaultdict(int)
    per_prompt: dict[tuple[str, str, str], int] = defaultdict(int)
    con = sqlite3.connect(db, timeout=10)
    try:
        for a, b, prompt, n in con.execute(
            "SELECT version_a, version_b, prompt, COUNT(*) FROM votes GROUP BY version_a, version_b, prompt"
        ):
            key = tuple(sorted((a, b)))
            per_pair[key] += n
            per_prompt[(*key, prompt)] += n
    finally:
        con.close()
    return per_pair, per_prompt


# ---------------------------------------------------------------- choosing pairs


class PairPicker:
    """Least-compared version pair first (then least-compared prompt of that pair), random tie-break, random sides.

    Counts are votes (from the database at start, then as they arrive) with pairs shown but not yet voted on as a
    second key, so several open pages do not all get the same pair.
    """

    def __init__(self, catalog: Catalog, db: Path, seed: int):
        self.catalog = catalog
        self.rng = random.Random(seed)
        self.votes, self.prompt_votes = pair_counts(db)
        self.shown: dict[tuple, int] = defaultdict(int)
        self.lock = threading.Lock()

    def next(self) -> Pair:
        with self.lock:
            a, b = min(self.catalog.shared, key=lambda p: (self.votes[p], self.shown[p], self.rng.random()))
            prompt = min(
                self.catalog.shared[(a, b)],
                key=lambda t: (self.prompt_votes[(a, b, t)], self.shown[(a, b, t)], self.rng.random()),
            )
            self.shown[(a, b)] += 1
            self.shown[(a, b, prompt)] += 1
            va = self.rng.choice(self.catalog.by_prompt[prompt][a])
            vb = self.rng.choice(self.catalog.by_prompt[prompt][b])
            left, right = (va, vb) if self.rng.random() < 0.5 else (vb, va)
            return Pair(prompt, left, right)

    def voted(self, pair: Pair) -> None:
        key = tuple(sorted((pair.left.version, pair.right.version)))
        with self.lock:
            self.votes[key] += 1
            self.prompt_votes[(*key, pair.prompt)] += 1


# ---------------------------------------------------------------- the web page

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Which video fits the prompt better?</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; text-align: center; }}
  #prompt {{ font-size: 1.4em; margin: 0.5em 0 1em; }}
  .pair {{ display: flex; gap: 2em; justify-content: center; }}
  .pair figure {{ margin: 0; flex: 1; }}
  /* height capped so the vote buttons stay on screen */
  video {{ width: 100%; max-width: 512px; max-height: 55vh; object-fit: contain; background: #000;
          image-rendering: pixelated; }}
  h1 {{ margin: 0.2em 0; }}
  .votes button {{ font-size: 1.1em; margin: 1em 0.5em; padding: 0.5em 1.5em; }}
  .meta {{ color: #777; font-size: 0.9em; }}
</style>
</head>
<body>
<h1>Which video fits the prompt better?</h1>
<p id="prompt">{prompt}</p>
<div class="pair">
  <figure><video id="left" src="{left}" autoplay loop muted playsinline></video>
    <figcaption>left</figcaption></figure>
  <figure><video id="right" src="{right}" autoplay loop muted playsinline></video>
    <figcaption>right</figcaption></figure>
</div>
<form class="votes" method="post" action="/vote">
  <input type="hidden" name="token" value="{token}">
  <button type="submit" name="choice" value="left" id="vote-left">left better</button>
  <button type="submit" name="choice" value="tie" id="vote-tie">tie</button>
  <button type="submit" name="choice" value="right" id="vote-right">right better</button>
</form>
<p class="meta">{votes} vote(s) recorded so far</p>
</body>
</html>
"""


def create_app(catalog: Catalog, db: Path | str, seed: int = 0):
    """The FastAPI app: GET / (a pair), GET /video/{id} (an mp4), POST /vote (form or JSON), GET /healthz."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
    from starlette.concurrency import run_in_threadpool

    db = init_db(db)
    picker = PairPicker(catalog, db, seed)
    # random ids, made fresh per server start: a URL names neither the version nor the file
    ids = {secrets.token_urlsafe(12): v for v in catalog.videos}
    id_of = {v.file: i for i, v in ids.items()}
    pending: OrderedDict[str, Pair] = OrderedDict()
    lock = threading.Lock()
    counter = {"votes": sum(picker.votes.values())}

    app = FastAPI(title="svd preference", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request):
        pair = picker.next()
        token = secrets.token_urlsafe(16)
        with lock:
            pending[token] = pair
            while len(pending) > MAX_PENDING:
                pending.popitem(last=False)
            votes = counter["votes"]
        body = PAGE.format(
            prompt=html.escape(pair.prompt),
            left=f"/video/{id_of[pair.left.file]}",
            right=f"/video/{id_of[pair.right.file]}",
            token=token,
            votes=votes,
        )
        response = HTMLResponse(body, headers={"Cache-Control": "no-store"})
        if not VOTER_RE.match(request.cookies.get("svd_voter", "")):
            response.set_cookie("svd_voter", secrets.token_hex(8), httponly=True, samesite="strict")
        return response

    @app.get("/video/{vid}")
    def video(vid: str):
        v = ids.get(vid)  # only ids we made are served: nothing from the URL ever becomes a path
        if v is None:
            return error(404, "unknown video")
        return FileResponse(v.path, media_type="video/mp4")

    @app.post("/vote")
    async def vote(request: Request):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        raw = await request.body()
        if len(raw) > 4096:
            return error(413, "vote too large")
        try:
            if kind == "application/json":
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise ValueError("not an object")
            elif kind in ("application/x-www-form-urlencoded", ""):
                data = {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), strict_parsing=bool(raw)).items()}
            else:
                return error(415, "send the vote as a form or as JSON")
        except (ValueError, UnicodeDecodeError):
            return error(400, "malformed vote body")
        token, choice = data.get("token"), data.get("choice")
        if not isinstance(choice, str) or choice not in OUTCOMES:
            return error(422, f"choice must be one of {', '.join(OUTCOMES)}")
        if not isinstance(token, str) or not token:
            return error(422, "token missing")
        voter = data.get("voter") if kind == "application/json" else None
        voter = voter if isinstance(voter, str) and VOTER_RE.match(voter) else request.cookies.get("svd_voter", "")
        voter = voter if VOTER_RE.match(voter) else "anonymous"
        with lock:
            pair = pending.pop(token, None)  # one vote per pair shown
        if pair is None:
            return error(404, "unknown or already used pair token; reload the page for a new pair")
        try:
            row = await run_in_threadpool(record_vote, db, pair, OUTCOMES[choice], voter)
        except sqlite3.Error as exc:
            with lock:
                pending[token] = pair  # the vote can be retried
            return error(503, f"could not store the vote ({exc})")
        picker.voted(pair)
        with lock:
            counter["votes"] += 1
        if kind == "application/json":
            return JSONResponse({"recorded": row})
        return RedirectResponse("/", status_code=303)  # post/redirect/get: the page loads the next pair

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "versions": len(catalog.versions), "videos": len(catalog.videos)}

    return app


def _check_port(host: str, port: int) -> None:
    """A taken port as a one-line error before serving (uvicorn would log it and exit)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: cannot be resolved ({exc.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port") from None


def gather_versions(params, refs: list[str], out: Path | str) -> Path:
    """Lay out the evaluation samples of model versions as `serve` reads them, so any two versions can be compared
    with no copying by hand: OUT/<label>/ holds each version's final samples (mp4) and their prompts.json.

    A ref is a registered version (`models:/NAME@ALIAS` or `models:/NAME/VERSION`; label NAME-vVERSION), whose
    samples are the ones its training run logged under `samples/` (a version made by `svd register` points to that
    run through its lineage tag), or a model folder written by `svd train` (label: the folder's name), whose
    samples are in FOLDER/samples/. A version without samples is a one-line error naming it."""
    out = Path(out)
    labels = [_gather_one(params, ref, out) for ref in refs]
    if len(set(labels)) != len(labels):
        raise InputError(f"--model: two refs name the same version ({', '.join(labels)})")
    return out


def _gather_one(params, ref: str, out: Path) -> str:
    import shutil

    if not ref.startswith("models:/"):
        folder = Path(ref)
        samples = folder / "samples"
        if not (samples / MANIFEST).is_file():
            raise InputError(f"--model {ref}: no samples/{MANIFEST} (a model folder written by `svd train`)")
        label = folder.resolve().name
        dest = out / label
        dest.mkdir(parents=True, exist_ok=True)
        for name, _ in _manifest_rows(samples / MANIFEST):
            shutil.copy2(samples / name, dest / name)
        shutil.copy2(samples / MANIFEST, dest / MANIFEST)
        return label

    import mlflow

    from svd import tracking

    name, version = tracking.model_version(params, ref)
    client = mlflow.MlflowClient()
    run_id = version.tags.get("svd.lineage.train_run_id")
    if not run_id or run_id == "unknown":
        run_id = version.run_id
    label = f"{name}-v{version.version}"
    files = {Path(a.path).name for a in client.list_artifacts(run_id, "samples") if not a.is_dir}
    if MANIFEST not in files:
        raise InputError(f"--model {ref}: its training run {run_id} logged no samples/{MANIFEST}")
    dest = out / label
    dest.mkdir(parents=True, exist_ok=True)

    def fetch(name: str) -> None:
        got = Path(
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"samples/{name}", dst_path=str(dest))
        )
        if got != dest / name:
            got.replace(dest / name)

    fetch(MANIFEST)
    for name, _ in _manifest_rows(dest / MANIFEST):
        if name not in files:
            raise InputError(f"--model {ref}: {MANIFEST} of run {run_id} lists {name}, which was not logged")
        fetch(name)
    return label


def serve(
    videos: Path | str, db: Path | str, *, host: str = "127.0.0.1", port: int = 8765, seed: int = 0, on_ready=None
) -> None:
    """Check the inputs, then serve the vote page until interrupted."""
    import uvicorn

    catalog = load_catalog(videos)
    app = create_app(catalog, db, seed)
    _check_port(host, port)
    if on_ready is not None:
        on_ready(f"http://{host}:{port}/", catalog)
    uvicorn.run(app, host=host, port=port, log_level="warning")


# ---------------------------------------------------------------- Elo


def expected_score(ra: float, rb: float) -> float:
    """Probability-like expected score of A against B."""
    return 1.0 / (1.0 + 10.0 ** ((rb - ra) / 400.0))


def elo(games: Iterable[tuple[str, str, float]], *, k: float = 32.0, initial: float = 1000.0) -> dict[str, float]:
    """Sequential Elo over (a, b, score of a) games in the given order; score 1 win, 0 loss, 0.5 tie."""
    ratings: dict[str, float] = {}
    for a, b, s in games:
        ra, rb = ratings.setdefault(a, initial), ratings.setdefault(b, initial)
        ea = expected_score(ra, rb)
        ratings[a] = ra + k * (s - ea)
        ratings[b] = rb + k * ((1.0 - s) - (1.0 - ea))
    return ratings


def elo_batch(a: np.ndarray, b: np.ndarray, s: np.ndarray, n_players: int, *, k: float, initial: float) -> np.ndarray:
    """Sequential Elo for R orderings at once: a, b (R, N) player indices, s (R, N) scores -> (R, n_players)."""
    a, b, s = np.atleast_2d(a), np.atleast_2d(b), np.atleast_2d(s).astype(np.float64)
    ratings = np.full((a.shape[0], n_players), float(initial))
    rows = np.arange(a.shape[0])
    for t in range(a.shape[1]):  # one vectorised step per game position, across all orderings
        ra, rb = ratings[rows, a[:, t]], ratings[rows, b[:, t]]
        delta = k * (s[:, t] - 1.0 / (1.0 + 10.0 ** ((rb - ra) / 400.0)))
        ratings[rows, a[:, t]] = ra + delta
        ratings[rows, b[:, t]] = rb - delta
    return ratings


def elo_bootstrap(
    games: list[tuple[str, str, float]], *, k: float = 32.0, initial: float = 1000.0, rounds: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Median and 95% interval of Elo over `rounds` resamples (with replacement, in random order) of the games."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    names = sorted({g[0] for g in games} | {g[1] for g in games})
    index = {n: i for i, n in enumerate(names)}
    a = np.array([index[g[0]] for g in games])
    b = np.array([index[g[1]] for g in games])
    s = np.array([g[2] for g in games], dtype=np.float64)
    draw = np.random.default_rng(seed).integers(0, len(games), size=(rounds, len(games)))
    ratings = elo_batch(a[draw], b[draw], s[draw], len(names), k=k, initial=initial)
    lo, med, hi = np.percentile(ratings, [2.5, 50.0, 97.5], axis=0)
    return {n: {"median": float(med[i]), "ci95_low": float(lo[i]), "ci95_high": float(hi[i])} for n, i in index.items()}


def elo_report(
    db: Path | str, *, k: float = 32.0, initial: float = 1000.0, rounds: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Ratings per model version from the votes in DB: sequential Elo, bootstrap median/interval, game tallies.

    `ranking` lists versions by sequential Elo (highest first); `ratings` holds one entry per version in that order.
    With rounds == 0 the bootstrap fields are left out.
    """
    if k <= 0:
        raise InputError(f"--k must be > 0, got {k}")
    if rounds < 0:
        raise InputError(f"--bootstrap must be >= 0, got {rounds}")
    votes = read_votes(db)
    games = [(v["version_a"], v["version_b"], SCORE_A[v["outcome"]]) for v in votes]
    ratings = elo(games, k=k, initial=initial)
    tally = {n: {"games": 0, "wins": 0, "losses": 0, "ties": 0} for n in ratings}
    for a, b, s in games:
        for name, score in ((a, s), (b, 1.0 - s)):
            t = tally[name]
            t["games"] += 1
            t["wins" if score == 1.0 else "losses" if score == 0.0 else "ties"] += 1
    boot = elo_bootstrap(games, k=k, initial=initial, rounds=rounds, seed=seed) if rounds else {}
    ranking = sorted(ratings, key=lambda n: (-ratings[n], n))
    out = {}
    for n in ranking:
        entry: dict[str, Any] = {"elo": round(ratings[n], 2)}
        entry.update({key: round(val, 2) for key, val in boot.get(n, {}).items()})
        entry.update(tally[n])
        out[n] = entry
    return {
        "votes": len(votes),
        "k": k,
        "initial": initial,
        "bootstrap_rounds": rounds,
        "seed": seed,
        "ranking": ranking,
        "ratings": out,
    }


def write_report(report: dict, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


__all__ = [
    "Catalog",
    "Pair",
    "PairPicker",
    "Video",
    "create_app",
    "elo",
    "elo_batch",
    "elo_bootstrap",
    "elo_report",
    "expected_score",
    "init_db",
    "load_catalog",
    "read_votes",
    "record_vote",
    "serve",
    "write_report",
]
