"""End to end in a real browser: `streamlit run app.py` on a free loopback port, driven by Playwright.

Needs Debian's chromium at /usr/bin/chromium (`.ci/run` installs it; `playwright install` cannot
download browsers on these machines) and the `playwright` package from the test extras.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from refiner import review, schemas
from refiner.store import RunStore
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
             "--", "--runs", str(runs)],
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
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)

            assert page.locator("[data-testid=stException]").count() == 0
            assert page.locator("h1", has_text="Run mixed").count() == 1
            table = page.locator("[data-testid=stTable]").first
            for i, d in enumerate(decisions):  # every row links to its parameter's plots
                link = table.locator(f"a[href='#r1-p{i}']")
                assert link.inner_text() == d["name"]
                assert page.locator(f"[id='r1-p{i}']").count() == 1
            # Incumbent, distribution, importance, parallel coordinates, two per parameter.
            n_charts = 4 + 2 * len(decisions)
            page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {n_charts}",
                                   timeout=60_000)

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
