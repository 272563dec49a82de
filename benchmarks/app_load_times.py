"""Review app load times of the 200-trial, 8-parameter run, for several checkouts, loads interleaved.

    python benchmarks/app_load_times.py [--loads 6] [--runs DIR] [--cold] [--file-watcher] CHECKOUT [CHECKOUT ...]

    # e.g. the code before and after a change, on the same machine at the same time:
    git worktree add /tmp/before main
    python benchmarks/app_load_times.py /tmp/before .

Each checkout gets its own `streamlit run CHECKOUT/app.py` on a loopback port and its own tab in one
headless Chromium (Debian's /usr/bin/chromium, as in tests/test_app_browser.py). Loads take turns,
one of each checkout in a round, so a machine whose load changes affects every checkout alike; the
load average is printed with every load. "first" is the run's title and a metric on screen; "full"
is what the browser test waits for: the script done, no placeholder left, the decisions table, and
every chart the page shows by default drawn (Vega-Lite since the page drew them that way, Plotly before).
The server is started as `refiner app` starts it (no source-file watcher; --file-watcher for Streamlit's default). Without --runs the run is built in a
temporary folder first (about a minute: 200 trials of a cheap function on the Optuna engine).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
DRAWN = """n => { const c = document.querySelectorAll('[data-testid=stVegaLiteChart], [data-testid=stPlotlyChart]');
    return c.length >= n && Array.from(c).every(x => x.querySelector('svg.marks, .js-plotly-plot .main-svg')); }"""


def build_run(runs: Path) -> None:
    sys.path.insert(0, str(TESTS))
    import refiner
    from refiner.trial import Objective
    from test_app_browser import BIG_SPACE, big

    refiner.Refiner(function=big, space=BIG_SPACE, objective=Objective("loss", "min"), rounds=2, trials_per_round=100,
                    directory=runs, project_name="big", seed=0, engine="optuna", verbose=0,
                    narrowing={"min_trials": 8}).search()


def serve(checkout: Path, runs: Path, watcher: bool = False) -> tuple[str, subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(checkout / "app.py"), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         # As `refiner app` starts it, unless asked for Streamlit's default source watcher.
         "--server.fileWatcherType", "auto" if watcher else "none", "--", "--runs", str(runs)],
        env=dict(os.environ, PYTHONPATH=str(checkout)), cwd=tempfile.gettempdir(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return url, proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"{checkout}: streamlit did not answer within 60 s")


def load(page, url: str) -> tuple[float, float, int]:
    start = time.monotonic()
    page.goto(f"{url}/?run=big", wait_until="domcontentloaded")
    page.wait_for_selector("h1:has-text('Run big')", timeout=60_000)
    page.wait_for_selector("[data-testid=stMetricValue]", timeout=60_000)
    first = time.monotonic() - start
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('[data-testid=stSkeleton]').length === 0", timeout=60_000)
    page.wait_for_selector("[data-testid=stTable]", timeout=60_000)
    page.wait_for_function(DRAWN, arg=3, timeout=60_000)
    full = time.monotonic() - start
    return first, full, page.evaluate("document.querySelectorAll('[data-testid=stElementContainer]').length")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--loads", type=int, default=6)
    parser.add_argument("--runs", type=Path, default=None, help="a runs folder holding the run 'big' (built if missing)")
    parser.add_argument("--file-watcher", action="store_true",
                        help="start Streamlit with its default source-file watcher (as before `refiner app` turned it off)")
    parser.add_argument("--cold", action="store_true",
                        help="each load in a new browser context (empty cache), as a first visit: the browser "
                             "downloads and compiles every bundle again")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    runs = args.runs or Path(tempfile.mkdtemp(prefix="app-load-times-")) / "runs"
    if not (runs / "big").exists():
        build_run(runs)
    servers = [(checkout.resolve(), *serve(checkout.resolve(), runs, args.file_watcher)) for checkout in args.checkouts]
    times: dict[Path, list[tuple[float, float]]] = {c: [] for c, _, _ in servers}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            pages = {}
            for checkout, url, _ in servers:  # a first load warms each server's cache and the browser's
                pages[checkout] = browser.new_page(viewport={"width": 1400, "height": 900})
                load(pages[checkout], url)
            for i in range(args.loads):
                for checkout, url, _ in servers:
                    if args.cold:
                        context = browser.new_context(viewport={"width": 1400, "height": 900})
                        first, full, elements = load(context.new_page(), url)
                        context.close()
                    else:
                        pages[checkout].bring_to_front()
                        first, full, elements = load(pages[checkout], url)
                    times[checkout].append((first, full))
                    print(f"{i} {checkout}: first {first:.2f} s, full {full:.2f} s, {elements} elements, "
                          f"load average {os.getloadavg()[0]:.2f}", flush=True)
            browser.close()
    finally:
        for _, _, proc in servers:
            proc.terminate()
            proc.wait()
    for checkout, rows in times.items():
        firsts, fulls = sorted(r[0] for r in rows), sorted(r[1] for r in rows)
        print(f"{checkout}: first median {statistics.median(firsts):.2f} s ({firsts[0]:.2f}-{firsts[-1]:.2f}), "
              f"full median {statistics.median(fulls):.2f} s ({fulls[0]:.2f}-{fulls[-1]:.2f})")


if __name__ == "__main__":
    main()
