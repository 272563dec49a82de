"""End to end in a real browser: `streamlit run app.py` on a free loopback port, driven by Playwright.

Needs Debian's chromium at /usr/bin/chromium (`.ci/run` installs it; `playwright install` cannot
download browsers on these machines) and the `playwright` package from the test extras.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

import refiner
from refiner import review, schemas
from refiner.space import Boolean, Choice, Float, Int, SearchSpace
from refiner.store import RunStore
from refiner.trial import Objective
from test_review import make_run

CHROMIUM = Path("/usr/bin/chromium")
APP = Path(__file__).resolve().parent.parent / "app.py"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install chromium; .ci/run installs it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"streamlit did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    runs = base / "runs"
    make_run(runs, "mixed")
    port = _free_port()
    log = base / "streamlit.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none", "--", "--runs", str(runs)],  # as `refiner app` starts it
            stdout=out, stderr=subprocess.STDOUT, cwd=base)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url, runs
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_rendered(page) -> None:
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('[data-testid=stSkeleton]').length === 0", timeout=60_000)


# At least `arg` charts on the page, and every one of them drawn (not just announced): Vega-Lite's
# (the charts every load shows) as an SVG of marks, Plotly's (drawn on demand) as its main SVG.
_CHARTS = "[data-testid=stVegaLiteChart], [data-testid=stPlotlyChart]"
_EVERY_CHART_DRAWN = """n => { const charts = document.querySelectorAll('%s');
    return charts.length >= n && Array.from(charts).every(c => c.querySelector('svg.marks, .js-plotly-plot .main-svg')); }
""" % _CHARTS


def _full_page_screenshot(page, path: Path) -> None:
    # Streamlit scrolls inside its own container, not the document; grow the viewport to the
    # content's height so a full-page screenshot holds the whole page.
    height = page.evaluate("""() => Math.max(document.body.scrollHeight, ...Array.from(
        document.querySelectorAll('[data-testid=stMain], [data-testid=stAppViewContainer], section'),
        el => el.scrollHeight))""")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, 16000)})
    page.wait_for_timeout(1500)  # Plotly redraws at the new size
    page.screenshot(path=str(path), full_page=True)


def test_the_app_renders_a_run_in_a_real_browser_and_exports_it(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, runs = server
    store = RunStore(runs / "mixed")
    decisions = store.read_decisions(1)["decisions"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page = context.new_page()
            page.goto(f"{url}/?run=mixed", wait_until="domcontentloaded")
            _wait_rendered(page)
            page.wait_for_selector("[data-testid=stTable] a[href='#r1-p0']", timeout=60_000)
            page.wait_for_function(_EVERY_CHART_DRAWN, arg=1, timeout=60_000)

            assert page.locator("[data-testid=stException]").count() == 0
            assert page.locator("h1", has_text="Run mixed").count() == 1
            table = page.locator("[data-testid=stTable]").first
            for i, d in enumerate(decisions):  # every row links to its parameter's plots
                link = table.locator(f"a[href='#r1-p{i}']")
                assert link.inner_text() == d["name"]
                assert page.locator(f"[id='r1-p{i}']").count() == 1
            # Incumbent, the round's distribution and importance; the rest on demand.
            page.wait_for_function(_EVERY_CHART_DRAWN, arg=3, timeout=60_000)
            assert page.locator("[data-testid=stVegaLiteChart]").count() == 3  # no Plotly until asked for
            assert page.locator("[data-testid=stPlotlyChart]").count() == 0

            with page.expect_download() as info:
                page.locator("[data-testid=stDownloadButton] button", has_text="JSON").first.click()
            download = info.value
            assert download.suggested_filename == "mixed_space.json"
            data = Path(download.path()).read_bytes()
            document = json.loads(data)
            assert schemas.problems(document, "search_space") == []
            assert data == review.export_bytes(store, "json")

            # Following a decision's link stays on the page (no new tab) and reaches its plots.
            table.locator("a[href='#r1-p1']").click()
            page.wait_for_timeout(500)
            assert len(context.pages) == 1 and page.url.endswith("#r1-p1")

            shot = tmp_path / "review_app.png"
            _full_page_screenshot(page, shot)
            assert shot.stat().st_size > 50_000
            assert page.locator("[data-testid=stException]").count() == 0
        finally:
            browser.close()


def test_a_path_in_the_url_is_refused_in_the_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _ = server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/?run=..%2F..%2Fetc", wait_until="domcontentloaded")
            _wait_rendered(page)
            page.wait_for_selector("[data-testid=stAlertContentError]", timeout=60_000)
            alert = page.locator("[data-testid=stAlertContentError]").first
            assert "Ignored the run named in the URL" in alert.inner_text()
            assert page.locator("[data-testid=stException]").count() == 0
        finally:
            browser.close()


# -- the review gate, driven through the page (issue 14) ---------------------------------------------
SHOTS = os.environ.get("REFINER_SCREENSHOTS")  # a folder to keep the screenshots in (docs/screenshots)


def _shot(page, tmp_path: Path, name: str, full: bool = False) -> Path:
    path = (Path(SHOTS) if SHOTS else tmp_path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if full:
        _full_page_screenshot(page, path)
        page.set_viewport_size({"width": 1400, "height": 900})
    else:
        page.screenshot(path=str(path))
    return path


def _settle(page) -> None:
    page.wait_for_timeout(400)  # let the click's rerun start before waiting for it to end
    _wait_rendered(page)


def _gated_config(base: Path) -> Path:
    (base / "gate_bowl.py").write_text(
        "def bowl(p):\n    return (p['x'] - 1.0) ** 2 + ((p['n'] - 20) / 20) ** 2\n")
    SearchSpace([Float("x", -5.0, 5.0), Int("n", 1, 64)]).to_json(base / "gate_space.json")
    path = base / "gated.toml"
    path.write_text(textwrap.dedent("""
        name = "gated"
        function = "gate_bowl:bowl"
        space = "gate_space.json"
        review = "each-round"
        [objective]
        name = "loss"
        direction = "min"
        [search]
        rounds = 2
        trials_per_round = 8
        seed = 0
        [narrowing]
        min_trials = 4
        min_cv_score = 0.0
    """))
    return path


def test_a_person_edits_a_decision_and_approves_a_waiting_run_in_the_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, runs = server
    config = _gated_config(tmp_path)
    run_dir = runs / "gated"
    store = RunStore(run_dir)
    env = dict(os.environ, PYTHONPATH=str(APP.parent))
    proc = subprocess.Popen([sys.executable, "-m", "refiner.cli", "run", str(config), "--run-dir", str(run_dir)],
                            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (store.exists() and store.read_run()["state"]["status"] == "awaiting_review"):
            assert time.monotonic() < deadline and proc.poll() is None, "the run never waited for review"
            time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{url}/?run=gated", wait_until="domcontentloaded")
                _wait_rendered(page)
                page.wait_for_selector("text=Round 0 waits for review", timeout=60_000)
                assert page.locator("[data-testid=stMetricValue]", has_text="awaiting_review").count() == 1
                _shot(page, tmp_path, "gate_waiting.png")
                page.locator(".st-key-param-0-0 summary").click()  # x's section: evidence, charts, review
                _settle(page)
                page.locator(".st-key-ov-gated-0-0-open label").click()
                _settle(page)
                page.locator(".st-key-ov-gated-0-0-action label", has_text="edit the range or values").click()
                _settle(page)
                for field, value in (("low", "0.5"), ("high", "1.5")):
                    box = page.locator(f".st-key-ov-gated-0-0-{field} input")
                    box.fill(value)
                    box.press("Enter")
                    _settle(page)
                page.locator(".st-key-ov-gated-0-0-save button").click()
                _settle(page)
                page.wait_for_selector("text=Saved: x edited for round 1", timeout=30_000)
                _wait_rendered(page)  # not mid-rerun: the shot showed stale, greyed elements
                # x's section stays open through the Save's rerun, its review with it (defect 1).
                assert page.locator(".st-key-ov-gated-0-0-save button").count() == 1
                # The edited decision in the round's table and the approval box below it; the page
                # is scrolled to the Save button otherwise.
                page.evaluate("document.getElementById('decisions-0').scrollIntoView({block: 'start'})")
                page.wait_for_timeout(1000)
                assert "edited by a person" in page.locator("[data-testid=stTable]").first.inner_text()
                _shot(page, tmp_path, "gate_edited.png")
                assert proc.poll() is None and not store.has_space(1)  # saved, not yet approved
                page.locator(".st-key-approve-0 button").click()
                # The click's proof is the approval on disk. The "Approved round 0" message lives for
                # one rerun only, and the run moving on right away makes the live page rerun again,
                # so the message can come and go between two of the browser's polls.
                approval_file = run_dir / "rounds" / "0" / "approval.json"
                deadline = time.monotonic() + 30
                while not approval_file.exists() and time.monotonic() < deadline:
                    page.wait_for_timeout(200)
                assert approval_file.exists(), "clicking 'Approve and continue' wrote no approval"
                out, _ = proc.communicate(timeout=180)
                assert proc.returncode == 0, out

                # The run went on with the edited range ...
                edited = {p.name: p for p in store.read_space(1)}["x"]
                assert (edited.low, edited.high) == (0.5, 1.5)
                approval = json.loads((run_dir / "rounds" / "0" / "approval.json").read_text())
                assert approval["by"] == "app" and approval["overrides"] == ["x"]
                # ... and `refiner show`, the export and the app agree on it.
                shown = subprocess.run([sys.executable, "-m", "refiner.cli", "show", str(run_dir)], env=env,
                                       capture_output=True, text=True, check=True).stdout
                assert "space: x [0.5, 1.5]" in shown and "approved in the review app" in shown
                exported = subprocess.run([sys.executable, "-m", "refiner.cli", "export", str(run_dir)], env=env,
                                          capture_output=True, check=True).stdout
                x = {p["name"]: p for p in json.loads(exported)["parameters"]}["x"]
                assert 0.5 <= x["low"] < x["high"] <= 1.5
                page.reload(wait_until="domcontentloaded")
                _wait_rendered(page)
                page.wait_for_selector("[data-testid=stMetricValue]:has-text('finished')", timeout=60_000)
                page.get_by_text("Round", exact=True)  # the picker
                page.locator("[data-testid=stRadio] label", has_text="0 (KerasTuner random search)").first.click()
                _settle(page)
                assert page.locator("text=Approved (app").count() == 1
                table = page.locator("[data-testid=stTable]").first.inner_text()
                assert "edited by a person" in table and "[0.5, 1.5]" in table
                with page.expect_download() as info:
                    page.locator("[data-testid=stDownloadButton] button", has_text="JSON").first.click()
                assert Path(info.value.path()).read_bytes() == exported
                assert page.locator("[data-testid=stException]").count() == 0
            finally:
                browser.close()
    finally:
        proc.kill()
        proc.wait()


# -- speed: a 200-trial, 8-parameter run --------------------------------------------------------
BIG_SPACE = SearchSpace([Float(f"f{i}", 0.0, 1.0) for i in range(4)] + [Float("lr", 1e-5, 1e-1, log=True),
                        Int("units", 16, 512, step=16), Choice("act", ("relu", "tanh", "gelu")), Boolean("bn")])


def big(p):
    return sum((p[f"f{i}"] - 0.3) ** 2 for i in range(4)) + (math.log10(p["lr"]) + 3) ** 2 / 10 \
        + abs(p["units"] - 128) / 512 + (0.1 if p["act"] != "relu" else 0.0) + (0.05 if p["bn"] else 0.0)


def test_a_200_trial_8_parameter_run_loads_fast_in_the_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, runs = server
    refiner.Refiner(function=big, space=BIG_SPACE, objective=Objective("loss", "min"), rounds=2, trials_per_round=100,
                    directory=runs, project_name="big", seed=0, engine="optuna", verbose=0,
                    narrowing={"min_trials": 8}).search()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/?run=big", wait_until="domcontentloaded")  # warm the server's cache once
            _wait_rendered(page)
            timings = []
            for _ in range(3):
                start = time.monotonic()
                page.goto(f"{url}/?run=big", wait_until="domcontentloaded")
                page.wait_for_selector("h1:has-text('Run big')", timeout=60_000)
                page.wait_for_selector("[data-testid=stMetricValue]", timeout=60_000)
                first = time.monotonic() - start
                # The full page: the script done, no placeholder left, the decisions table, and every
                # chart the page shows by default drawn (incumbent, distribution, importance).
                _wait_rendered(page)
                page.wait_for_selector("[data-testid=stTable]", timeout=60_000)
                page.wait_for_function(_EVERY_CHART_DRAWN, arg=3, timeout=60_000)
                timings.append((first, time.monotonic() - start))
            _shot(page, tmp_path, "big_run_page.png", full=True)
            # For comparison: every chart at once, as the page drew it before.
            start = time.monotonic()
            page.locator(".st-key-plots-all-1 label").click()
            page.locator(".st-key-across label", has_text="Parallel coordinates").click()
            _settle(page)
            # 3 by default, 2 for each of the 8 parameters, parallel coordinates across rounds
            page.wait_for_function(_EVERY_CHART_DRAWN, arg=20, timeout=90_000)
            every = time.monotonic() - start
            _shot(page, tmp_path, "big_run_all_plots.png", full=True)
            assert page.locator("[data-testid=stException]").count() == 0
            _views(page, tmp_path)
        finally:
            browser.close()
    firsts, fulls = sorted(t[0] for t in timings), sorted(t[1] for t in timings)
    print(f"\n200 trials x 8 parameters: first meaningful content {firsts[1]:.2f} s (median of 3, "
          f"{firsts[0]:.2f}-{firsts[2]:.2f}), full page {fulls[1]:.2f} s ({fulls[0]:.2f}-{fulls[2]:.2f}); "
          f"turning every chart on afterwards took {every:.2f} s")
    # Speed is reported, not asserted: a timed test fails on a busy machine for reasons that are not
    # the page's. On an idle 2-core machine, REFINER_SPEED_TARGETS=1 holds the page to the issue's
    # targets (1.5 s to first content, 3 s to the full page) for a measurement run.
    if os.environ.get("REFINER_SPEED_TARGETS"):
        assert firsts[1] < 1.5, f"first meaningful content took {firsts[1]:.2f} s (target 1.5 s)"
        assert fulls[1] < 3.0, f"the full page took {fulls[1]:.2f} s (target 3 s)"


def _chart_shot(page, tmp_path: Path, title: str, name: str) -> None:
    chart = page.locator(_CHARTS, has_text=title).first
    chart.wait_for(timeout=60_000)
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(800)  # Plotly's transitions
    path = (Path(SHOTS) if SHOTS else tmp_path) / name
    chart.screenshot(path=str(path))
    assert path.stat().st_size > 10_000


def _views(page, tmp_path: Path) -> None:
    """The views of issue 14 that were still missing, drawn in the browser (and their screenshots)."""
    page.set_viewport_size({"width": 1400, "height": 900})
    _chart_shot(page, tmp_path, "empirical distribution", "view_scores_ecdf.png")
    page.locator(".st-key-across label", has_text="Contour").click()
    _settle(page)
    _chart_shot(page, tmp_path, "interpolated between the trials", "view_contour.png")
    page.locator("[data-testid=stSidebar] label", has_text="Runs overview").click()
    _settle(page)
    for run in ("big", "mixed"):
        box = page.locator(".st-key-compare input")
        box.fill(run)
        box.press("Enter")
        _settle(page)
    page.keyboard.press("Escape")
    _chart_shot(page, tmp_path, "run against run", "view_compare.png")
    page.wait_for_timeout(300)
    _shot(page, tmp_path, "runs_overview_compare.png")
    assert page.locator("[data-testid=stException]").count() == 0
