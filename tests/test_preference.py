"""Human preference: Elo arithmetic, the vote database, the blind vote page (HTTP and a real headless Chromium), CLI."""

import json
import math
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from svd.errors import InputError
from svd.evaluation import preference as pref
from svd.io.video import write_video

ROOT = Path(__file__).resolve().parents[1]
SVD = Path(sys.executable).parent / "svd"
COLOURS = {"base": (200, 40, 40), "curated": (40, 200, 40), "hq": (40, 40, 200)}
PROMPTS = ["a red circle moving left", "a blue square standing still"]


# ---------------------------------------------------------------- fixtures


def _clip(colour, n=12, size=32):
    """A small moving square, so a playing video changes over time."""
    frames = np.zeros((n, size, size, 3), np.uint8)
    for t in range(n):
        frames[t, :, :] = 20
        x = 2 + t
        frames[t, 8:16, x : x + 8] = colour
    return frames


def make_videos(root: Path, versions=("base", "curated", "hq"), prompts=PROMPTS) -> Path:
    for version in versions:
        folder = root / version
        folder.mkdir(parents=True)
        manifest = {}
        for i, prompt in enumerate(prompts):
            name = f"{i:02d}_{prompt.replace(' ', '_')}.mp4"
            write_video(folder / name, _clip(COLOURS[version]), fps=8)
            manifest[name] = prompt
        (folder / "prompts.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("pref") / "videos")


def make_db(path: Path, games) -> Path:
    """games: (version_a, version_b, outcome 'a'|'b'|'tie'), stored in order with increasing timestamps."""
    pref.init_db(path)
    con = sqlite3.connect(path)
    with con:
        for i, (a, b, outcome) in enumerate(games):
            con.execute(
                "INSERT INTO votes (ts, prompt, version_a, version_b, file_a, file_b, outcome, voter) "
                "VALUES (?, 'p', ?, ?, ?, ?, ?, 't')",
                (f"2026-01-01T00:00:{i:02d}.000000+00:00", a, b, f"{a}/x.mp4", f"{b}/x.mp4", outcome),
            )
    con.close()
    return path


# ---------------------------------------------------------------- Elo


def test_elo_matches_hand_computed_values():
    # game 1: equal ratings, expected 0.5, A wins: A = 1000 + 32*0.5 = 1016, B = 984
    r = pref.elo([("A", "B", 1.0)], k=32, initial=1000)
    assert r == pytest.approx({"A": 1016.0, "B": 984.0})
    # game 2: B beats A. E_A = 1/(1+10^(-0.08)) = 1/1.831764 = 0.545922; A = 1016 - 32*0.545922 = 998.5305
    r = pref.elo([("A", "B", 1.0), ("B", "A", 1.0)], k=32, initial=1000)
    e_a = 1.0 / (1.0 + 10 ** ((984 - 1016) / 400))
    assert e_a == pytest.approx(0.5459219, abs=1e-6)
    assert r["A"] == pytest.approx(998.53050, abs=1e-4)
    assert r["B"] == pytest.approx(1001.46950, abs=1e-4)
    # a tie between unequal ratings moves the higher one down: 1016 vs 984, tie -> A = 1016 - 32*0.045922
    r = pref.elo([("A", "B", 1.0), ("A", "B", 0.5)], k=32, initial=1000)
    assert r["A"] == pytest.approx(1014.53050, abs=1e-4)
    assert sum(r.values()) == pytest.approx(2000.0)  # Elo is zero-sum
    assert pref.expected_score(1400, 1000) == pytest.approx(1 / 1.1)


def test_symmetric_outcomes_keep_equal_ratings():
    assert pref.elo([("A", "B", 0.5)] * 5) == pytest.approx({"A": 1000.0, "B": 1000.0})
    # A beats B then B beats A from the same start, both ways round: the two orders mirror each other
    one = pref.elo([("A", "B", 1.0), ("B", "A", 1.0)])
    two = pref.elo([("B", "A", 1.0), ("A", "B", 1.0)])
    assert one["A"] == pytest.approx(two["B"]) and one["B"] == pytest.approx(two["A"])


def test_batch_elo_equals_sequential_elo():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 3, 40)
    b = (a + rng.integers(1, 3, 40)) % 3
    s = rng.choice([0.0, 0.5, 1.0], 40)
    names = ["x", "y", "z"]
    seq = pref.elo([(names[i], names[j], v) for i, j, v in zip(a, b, s)], k=24, initial=1500)
    batch = pref.elo_batch(a, b, s, 3, k=24, initial=1500)[0]
    assert batch == pytest.approx([seq[n] for n in names])


def test_always_winning_version_ends_highest_with_interval(tmp_path):
    games = []
    for i in range(30):  # hq beats everyone; curated beats base; left/right alternate
        for winner, loser in (("hq", "base"), ("hq", "curated"), ("curated", "base")):
            games.append((winner, loser, "a") if i % 2 else (loser, winner, "b"))
    report = pref.elo_report(make_db(tmp_path / "v.sqlite", games), rounds=200, seed=3)
    assert report["ranking"] == ["hq", "curated", "base"]
    hq = report["ratings"]["hq"]
    assert hq["games"] == 60 and hq["wins"] == 60 and hq["losses"] == 0 and hq["ties"] == 0
    assert report["ratings"]["base"]["losses"] == 60
    for entry in report["ratings"].values():
        assert entry["ci95_low"] <= entry["median"] <= entry["ci95_high"]
    assert report["ratings"]["hq"]["ci95_low"] > report["ratings"]["base"]["ci95_high"]
    # seeded: the same report again; another seed moves the bootstrap numbers
    assert pref.elo_report(tmp_path / "v.sqlite", rounds=200, seed=3) == report
    other = pref.elo_report(tmp_path / "v.sqlite", rounds=200, seed=4)
    assert other["ratings"]["hq"]["elo"] == hq["elo"] and other["ratings"] != report["ratings"]


def test_bootstrap_ci_reflects_order_dependence(tmp_path):
    # 50/50 record between two versions: sequential Elo depends on which came last, the bootstrap straddles 1000
    games = [("A", "B", "a")] * 10 + [("A", "B", "b")] * 10
    report = pref.elo_report(make_db(tmp_path / "v.sqlite", games), rounds=300, seed=0)
    assert report["ratings"]["B"]["elo"] > report["ratings"]["A"]["elo"]  # B won the last 10
    for v in ("A", "B"):
        e = report["ratings"][v]
        assert e["ci95_low"] < 1000 < e["ci95_high"]
    no_boot = pref.elo_report(tmp_path / "v.sqlite", rounds=0)
    assert "median" not in no_boot["ratings"]["A"] and no_boot["ratings"]["A"]["elo"] == report["ratings"]["A"]["elo"]


def test_db_errors_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        pref.read_votes(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()  # reading never creates the file
    empty = pref.init_db(tmp_path / "empty.sqlite")
    with pytest.raises(InputError, match="no votes yet"):
        pref.read_votes(empty)
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not sqlite at all " * 100)
    with pytest.raises(InputError, match="not a readable SQLite database") as exc:
        pref.read_votes(corrupt)
    assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match="not a usable SQLite database"):
        pref.init_db(corrupt)
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE other (x)").connection.close()
    with pytest.raises(InputError, match="no votes table"):
        pref.read_votes(foreign)
    zero = tmp_path / "zero.sqlite"
    zero.write_bytes(b"")
    with pytest.raises(InputError, match="no votes table"):
        pref.read_votes(zero)
    bad = make_db(tmp_path / "bad.sqlite", [("A", "A", "a")])
    with pytest.raises(InputError, match="vote id 1 is malformed"):
        pref.read_votes(bad)


# ---------------------------------------------------------------- catalog and pairs


def test_catalog_reads_versions_and_rejects_bad_manifests(videos, tmp_path):
    cat = pref.load_catalog(videos)
    assert cat.versions == ["base", "curated", "hq"]
    assert set(cat.shared) == {("base", "curated"), ("base", "hq"), ("curated", "hq")}
    assert all(sorted(p) == sorted(PROMPTS) for p in cat.shared.values())

    def broken(manifest, name="v2"):
        root = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        make_videos(root, versions=("base",))
        (root / name).mkdir()
        if manifest is not None:
            (root / name / "prompts.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
        return root

    outside = tmp_path / "outside.mp4"
    write_video(outside, _clip((1, 2, 3)), fps=8)
    cases = {
        "no prompts.json": broken(None),
        "not a readable JSON manifest": broken("{oops"),
        "must be a path inside": broken({"../base/00_a_red_circle_moving_left.mp4": PROMPTS[0]}),
        "not an .mp4 file": broken({"prompts.json": PROMPTS[0]}),
        "not found": broken({"missing.mp4": PROMPTS[0]}),
        "non-empty prompt": broken({"x.mp4": "  "}),
        "listed more than once": broken([{"file": "a.mp4", "prompt": PROMPTS[0]}, {"file": "a.mp4", "prompt": "b"}]),
        "no prompt has samples from two": broken({"x.mp4": "another prompt"}),
    }
    write_video(cases["no prompt has samples from two"] / "v2" / "x.mp4", _clip((9, 9, 9)), fps=8)
    write_video(cases["listed more than once"] / "v2" / "a.mp4", _clip((9, 9, 9)), fps=8)
    link_root = broken({"link.mp4": PROMPTS[0]})
    (link_root / "v2" / "link.mp4").symlink_to(outside)
    cases["resolves outside"] = link_root
    junk_root = broken({"junk.mp4": PROMPTS[0]})
    (junk_root / "v2" / "junk.mp4").write_bytes(b"not a video")
    cases["not a readable media container"] = junk_root
    one = tmp_path / "one"
    make_videos(one, versions=("base",))
    cases["at least two"] = one
    cases["not a folder"] = tmp_path / "nope"
    for message, root in cases.items():
        with pytest.raises(InputError, match=message):
            pref.load_catalog(root)


def test_pairs_spread_over_version_pairs_with_random_sides(videos, tmp_path):
    db = pref.init_db(tmp_path / "p.sqlite")
    picker = pref.PairPicker(pref.load_catalog(videos), db, seed=0)
    seen, lefts = {}, {}
    for _ in range(30):
        pair = picker.next()
        assert pair.left.version != pair.right.version
        assert pair.left.prompt == pair.right.prompt == pair.prompt
        key = tuple(sorted((pair.left.version, pair.right.version)))
        seen[key] = seen.get(key, 0) + 1
        lefts[pair.left.version] = lefts.get(pair.left.version, 0) + 1
        picker.voted(pair)
    assert sorted(seen.values()) == [10, 10, 10]  # least-compared pair first: perfectly even
    assert len(lefts) == 3 and min(lefts.values()) >= 4  # every version sometimes on the left
    # a restarted server continues from the votes in the database: the pair with no votes comes first
    make_db(db, [("base", "curated", "a"), ("hq", "base", "tie")])
    pair = pref.PairPicker(pref.load_catalog(videos), db, seed=5).next()
    assert {pair.left.version, pair.right.version} == {"curated", "hq"}


# ---------------------------------------------------------------- the vote page over HTTP


def _page_parts(text):
    import re

    token = re.search(r'name="token" value="([^"]+)"', text).group(1)
    srcs = re.findall(r'<video id="(?:left|right)" src="([^"]+)"', text)
    prompt = re.search(r'<p id="prompt">([^<]*)</p>', text).group(1)
    return token, srcs, prompt


def test_vote_page_is_blind_and_rejects_bad_votes(videos, tmp_path):
    from fastapi.testclient import TestClient

    db = tmp_path / "votes.sqlite"
    client = TestClient(pref.create_app(pref.load_catalog(videos), db, seed=1))
    page = client.get("/")
    assert page.status_code == 200
    token, srcs, prompt = _page_parts(page.text)
    assert prompt in PROMPTS and len(srcs) == 2 and srcs[0] != srcs[1]
    # nothing names a version or a file; the random ids (video srcs, vote token) are left out of the check, since
    # they can spell "hq" by chance (a make test run failed on src="/video/hqQ0yV3-...")
    visible = page.text
    for opaque in (token, *srcs):
        visible = visible.replace(opaque, "")
    for name in ("base", "curated", "hq", ".mp4", "prompts.json"):
        assert name not in visible
    video = client.get(srcs[0])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"
    ranged = client.get(srcs[0], headers={"Range": "bytes=0-9"})  # browsers seek with range requests
    assert ranged.status_code == 206 and len(ranged.content) == 10

    # path traversal and unknown ids: 404, never a file
    for url in ("/video/..%2F..%2Fetc%2Fpasswd", "/video/../../etc/passwd", "/video/base%2F00.mp4", "/video/x"):
        assert client.get(url).status_code == 404, url
    # malformed votes: 4xx, nothing stored
    bad = [
        ({"data": {"token": token, "choice": "both"}}, 422),
        ({"data": {"token": "not-a-token", "choice": "left"}}, 404),
        ({"data": {"choice": "left"}}, 422),
        ({"data": {}}, 422),
        ({"content": b"token=%ff%fe&&&choice", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, 400),
        ({"json": {"token": token, "choice": ["left"]}}, 422),
        ({"content": b"x", "headers": {"content-type": "text/plain"}}, 415),
        ({"content": b"a" * 5000, "headers": {"content-type": "application/json"}}, 413),
    ]
    for kwargs, status in bad:
        r = client.post("/vote", follow_redirects=False, **kwargs)
        assert r.status_code == status, (kwargs, r.status_code, r.text)
        assert "error" in r.json()
    assert not sqlite3.connect(db).execute("SELECT COUNT(*) FROM votes").fetchone()[0]

    # a good form vote: stored, redirected to the next pair; the token is single-use
    r = client.post("/vote", data={"token": token, "choice": "left"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert client.post("/vote", data={"token": token, "choice": "left"}).status_code == 404
    token2, _, _ = _page_parts(client.get("/").text)
    r = client.post("/vote", json={"token": token2, "choice": "tie", "voter": "alice"})
    assert r.status_code == 200 and r.json()["recorded"] == 2
    rows = pref.read_votes(db)
    assert [r["outcome"] for r in rows] == ["a", "tie"]
    assert rows[0]["prompt"] == prompt and rows[1]["voter"] == "alice"
    assert rows[0]["voter"] == client.cookies["svd_voter"]
    assert rows[0]["file_a"].split("/")[0] == rows[0]["version_a"] != rows[0]["version_b"]


def test_vote_page_refuses_a_foreign_database(videos, tmp_path):
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE votes (x)").connection.close()
    with pytest.raises(InputError, match="lacks column"):
        pref.create_app(pref.load_catalog(videos), foreign)


# ---------------------------------------------------------------- a real browser


def _chromium():
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "needs Debian's chromium and chromedriver: apt-get install -y chromium chromium-driver "
            "(make setup does this as root)"
        )
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(videos, tmp_path):
    import uvicorn

    db = tmp_path / "browser.sqlite"
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            pref.create_app(pref.load_catalog(videos), db, seed=2), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", db
    server.should_exit = True
    thread.join(10)


def test_headless_chromium_plays_both_videos_and_votes(live_server, tmp_path):
    browser, driver_path = _chromium()
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must not reach for the network
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, db = live_server
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
    ):
        options.add_argument(arg)
    drv = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        drv.set_page_load_timeout(20)
        drv.get(url)
        prompt = drv.find_element(By.ID, "prompt").text
        assert prompt in PROMPTS
        assert len(drv.find_elements(By.TAG_NAME, "video")) == 2
        # both decode and play: data for the current frame, not paused, time moving
        state = (
            "return Array.from(document.querySelectorAll('video')).map(v => "
            "[v.readyState, v.paused, v.currentTime, v.videoWidth, v.error && v.error.code])"
        )
        playing = lambda d: all(r[0] >= 2 and not r[1] and r[2] > 0 for r in d.execute_script(state))  # noqa: E731
        WebDriverWait(drv, 15).until(playing)
        assert all(r[3] == 32 and r[4] is None for r in drv.execute_script(state))
        token = drv.find_element(By.NAME, "token").get_attribute("value")

        drv.find_element(By.ID, "vote-right").click()
        # the page is replaced under the driver: elements of the old one go stale while it loads
        WebDriverWait(drv, 15, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(
            lambda d: d.find_element(By.NAME, "token").get_attribute("value") != token
        )
        rows = pref.read_votes(db)
        assert len(rows) == 1 and rows[0]["outcome"] == "b" and rows[0]["prompt"] == prompt
        # the next pair is on screen and playing
        assert drv.find_element(By.ID, "prompt").text in PROMPTS
        assert "1 vote(s) recorded" in drv.find_element(By.TAG_NAME, "body").text
        WebDriverWait(drv, 15).until(playing)
    finally:
        drv.quit()


# ---------------------------------------------------------------- CLI


def _run(*args, cwd=ROOT):
    return subprocess.run([str(SVD), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_cli_elo_prints_and_writes_json(tmp_path):
    from svd.cli import app

    db = make_db(tmp_path / "v.sqlite", [("hq", "base", "a"), ("base", "hq", "b"), ("hq", "base", "tie")])
    out = tmp_path / "m" / "elo.json"
    result = CliRunner().invoke(
        app,
        [
            "--params",
            str(ROOT / "params.yaml"),
            "evaluate",
            "elo",
            "--db",
            str(db),
            "--k",
            "16",
            "--bootstrap",
            "50",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed == json.loads(out.read_text())
    assert set(printed) == {"votes", "k", "initial", "bootstrap_rounds", "seed", "ranking", "ratings"}
    assert printed["votes"] == 3 and printed["k"] == 16 and printed["initial"] == 1000
    assert printed["ranking"] == ["hq", "base"] == list(printed["ratings"])
    hq = printed["ratings"]["hq"]
    assert set(hq) == {"elo", "median", "ci95_low", "ci95_high", "games", "wins", "losses", "ties"}
    assert (hq["games"], hq["wins"], hq["losses"], hq["ties"]) == (3, 2, 0, 1)
    assert math.isclose(hq["elo"] + printed["ratings"]["base"]["elo"], 2000, abs_tol=0.02)


def test_cli_bad_inputs_exit_2_with_one_line_error(tmp_path, videos, monkeypatch, capsys):
    corrupt = tmp_path / "c.sqlite"
    corrupt.write_bytes(b"garbage" * 200)
    empty = pref.init_db(tmp_path / "e.sqlite")
    cases = [
        (["evaluate", "elo", "--db", str(tmp_path / "none.sqlite")], "no such file"),
        (["evaluate", "elo", "--db", str(corrupt)], "not a readable SQLite database"),
        (["evaluate", "elo", "--db", str(empty)], "no votes yet"),
        (["evaluate", "elo", "--db", str(empty), "--k", "0"], "--k must be > 0"),
        (["evaluate", "preference-serve", "--videos", str(tmp_path / "nope"), "--db", str(empty)], "not a folder"),
        (["evaluate", "preference-serve", "--db", str(empty)], "give --videos FOLDER"),
        (["evaluate", "preference-serve", "--model", str(videos / "base"), "--db", str(empty)], "at least two"),
    ]
    # the installed command once (each start imports torch for the thread settings: seconds), the rest in-process
    r = _run(*cases[0][0])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and cases[0][1] in r.stderr and r.stderr.count("\n") == 1, r.stderr
    from svd import cli

    for args, message in cases[1:]:
        monkeypatch.setattr(sys, "argv", ["svd", "--params", str(ROOT / "params.yaml"), *args])
        with pytest.raises(SystemExit) as exc:
            cli.main()
        err = capsys.readouterr().err
        assert exc.value.code == 2, (args, err)
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "none.sqlite").exists()


def _listeners(port: int) -> set[str]:
    """Local addresses in LISTEN state on PORT, from /proc/net/tcp (IPv4) and tcp6."""
    found = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            pytest.skip("needs /proc/net/tcp to see which address the server listens on")
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # 0A = LISTEN
                if len(addr) == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    found.add("ipv6:" + addr)
    return found


def test_cli_serve_binds_localhost_and_serves(videos, tmp_path):
    port = _free_port()
    db = tmp_path / "cli.sqlite"
    proc = subprocess.Popen(
        [str(SVD), "evaluate", "preference-serve", "--videos", str(videos), "--db", str(db), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert json.loads(r.read()) == {"status": "ok", "versions": 3, "videos": 6}
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "svd evaluate preference-serve did not come up"
                time.sleep(0.2)
        # bound to the loopback only (the default host), and a second server on the same port is a clear error
        listening = _listeners(port)
        assert listening and listening <= {"127.0.0.1"}, listening
        busy = _run("evaluate", "preference-serve", "--videos", str(videos), "--db", str(db), "--port", str(port))
        assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr, busy.stderr
        assert pref.init_db(db) == db  # created with its table
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    assert f"open http://127.0.0.1:{port}/" in out


def test_registered_versions_are_laid_out_for_the_vote_page(videos, tmp_path):
    """`preference-serve --model REF --model REF`: each version's samples come from its training run (a version
    made by `svd register` finds that run through its lineage tag) or its model folder, with no copying by hand."""
    from svd import tracking
    from svd.config import load_params

    params = load_params(
        ROOT / "params.yaml",
        overrides=[f"paths.mlflow_uri=sqlite:///{tmp_path}/mlflow.db", f"paths.mlflow_artifacts={tmp_path}/artifacts"],
    )
    runs = {}
    for version in ("base", "curated"):  # what `svd train` logs: the final samples under samples/, then a version
        model = tmp_path / "models" / version
        (model / "unet").mkdir(parents=True)
        (model / "unet" / "config.json").write_text("{}")
        shutil.copytree(videos / version, model / "samples")
        with tracking.stage_run(params, f"train_{version}") as run:
            for f in (model / "samples").iterdir():
                tracking.log_artifacts(f, "samples")
            tracking.register_folder(params, model, "svd-t2v", [version], include=["unet"])
            runs[version] = run.info.run_id
    with tracking.stage_run(params, "register"):  # the gate's own version: its lineage names the training run
        tracking.register_folder(
            params,
            tmp_path / "models" / "curated",
            "svd-t2v",
            ["champion"],
            include=["unet"],
            tags={"svd.lineage.train_run_id": runs["curated"]},
        )
    hq = tmp_path / "models" / "hq"  # and an unregistered model folder
    (hq / "samples").mkdir(parents=True)
    for f in (videos / "hq").iterdir():
        shutil.copy2(f, hq / "samples" / f.name)

    out = pref.gather_versions(
        params, ["models:/svd-t2v@base", "models:/svd-t2v@champion", str(hq)], tmp_path / "gathered"
    )
    catalog = pref.load_catalog(out)
    assert catalog.versions == ["hq", "svd-t2v-v1", "svd-t2v-v3"]
    assert len(catalog.videos) == 3 * len(PROMPTS) and len(catalog.shared) == 3
    assert json.loads((out / "svd-t2v-v3" / "prompts.json").read_text()) == json.loads(
        (videos / "curated" / "prompts.json").read_text()
    )

    with pytest.raises(InputError, match="not in the MLflow registry"):
        pref.gather_versions(params, ["models:/svd-t2v@nobody"], tmp_path / "x")
    with pytest.raises(InputError, match="no samples/prompts.json"):
        pref.gather_versions(params, [str(tmp_path / "models" / "nothing")], tmp_path / "x")
    with tracking.stage_run(params, "train_bare"):
        tracking.register_folder(params, tmp_path / "models" / "base", "svd-bare", ["x"], include=["unet"])
    with pytest.raises(InputError, match="logged no samples"):
        pref.gather_versions(params, ["models:/svd-bare@x"], tmp_path / "x")
