"""Enter -> the next case's images painted, in Debian's chromium, on the demo.

Starts `manage.py demo --no-models` on a fresh data folder (a new demo study of 200
cases, the server and its worker on this machine), logs in as the demo reader and
answers cases with the keyboard, as a reader does: a diagnosis key, a confidence key,
Enter. Two ways of going to the next case are measured in the same run, in alternating
blocks so that both see the same machine:

- ``switch``: the case page as it is served (the answer goes to the JSON API, which
  answers with the next case; the page swaps in its images, loaded ahead);
- ``reload`` (the baseline): the same page told to post as a plain HTML form
  (``window.READERSTUDY_CLASSIC``), which reloads the whole page per answer, as every
  answer did before the switch.

Each figure is measured inside the page: from the Enter key's event time to two
animation frames after the page's ``readerstudy:case-shown`` event (the new images
decoded and on screen). For ``reload`` the key time is kept across the navigation in
sessionStorage, on the same clock (``performance.timeOrigin + now()``).

    python bench/reader_browser.py               # 60 cases each way, 0.5 s on each
    python bench/reader_browser.py --cases 30 --think-ms 2000

Prints on how many cases the page had to be scrolled (goal: none, at a laptop's
1366x768 and a tablet's 768x1024 or 1024x768: ``--window``), per way the median, p95 and
max in ms; the last line is the ratio of the medians (reload / switch). Goal: switch
median under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("READERSTUDY_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

# In every page: the way to measure (from localStorage), the Enter key's time, and the
# figure when the page says the case is shown.
INIT = """
window.READERSTUDY_CLASSIC = localStorage.getItem("bench-way") === "reload";
const clock = () => performance.timeOrigin + performance.now();
document.addEventListener("keydown", (e) => {
  if (e.key === "Enter") sessionStorage.setItem("bench-t0", String(performance.timeOrigin + e.timeStamp));
}, true);
function record(list, t0) {
  const values = JSON.parse(sessionStorage.getItem(list) || "[]");
  values.push(t0 ? clock() - t0 : null);
  sessionStorage.setItem(list, JSON.stringify(values));
}
document.addEventListener("readerstudy:case-shown", () => {
  const t0 = Number(sessionStorage.getItem("bench-t0") || 0);
  record("bench-shown", t0);
  // a reloaded page is the server's reply; the switch waits for it (case-confirmed)
  if (window.READERSTUDY_CLASSIC) { record("bench-confirmed", t0); sessionStorage.removeItem("bench-t0"); }
});
document.addEventListener("readerstudy:case-confirmed", () => {
  record("bench-confirmed", Number(sessionStorage.getItem("bench-t0") || 0));
  sessionStorage.removeItem("bench-t0");
});
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(data_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    env.update(READERSTUDY_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    log = open(data_dir / "demo.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--no-models", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the demo stopped: see {data_dir / 'demo.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=2):
                return process
        except OSError:
            time.sleep(1)
    sys.exit("the demo did not start within 10 minutes")


def stop_demo(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def reach_first_case(page, base: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/?next=/")
    page.fill("input[name=username]", "reader")
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.locator("a[href*='/studies/']").first.click()
    page.wait_for_load_state()
    if "/consent/" in page.url:
        page.check("input[name=agree]")
        with page.expect_navigation():
            page.keyboard.press("Enter")
    if "/profile/" in page.url:
        page.select_option("select[name=level]", "attending")
        page.fill("input[name=years_in_dermatology]", "7")
        with page.expect_navigation():
            page.keyboard.press("Enter")
    assert "/case/" in page.url, page.url


def shown(page, name: str = "bench-shown") -> list:
    return page.evaluate(f"JSON.parse(sessionStorage.getItem('{name}') || '[]')")


def answer(page, way: str, think_ms: int) -> bool:
    """Answer the case on screen, after ``think_ms`` of looking at it (a reader takes
    seconds: the case after it loads meanwhile); return once the next one is shown and
    the server has confirmed the answer. True where the case's page had to be scrolled
    (it was larger than the window)."""
    page.wait_for_timeout(think_ms)
    scrolls = page.evaluate(
        "document.scrollingElement.scrollHeight > innerHeight || "
        "document.scrollingElement.scrollWidth > innerWidth"
    )
    before = len(shown(page))
    page.keyboard.press("3")
    page.keyboard.press("4")
    if way == "reload":
        with page.expect_navigation():
            page.keyboard.press("Enter")
    else:
        page.keyboard.press("Enter")
    page.wait_for_function(
        f"JSON.parse(sessionStorage.getItem('bench-shown') || '[]').length > {before}"
    )
    page.wait_for_function("document.querySelector('#answer-form input[name=case]').value")
    page.wait_for_function("!document.querySelector('#submit-answer[aria-busy=true]')")
    return scrolls


def save_screenshots(page, folder: Path, window: tuple[int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.wait_for_selector("#case-root[data-ready]", state="attached")
    for width, height in ((1366, 768), (1024, 768), (768, 1024), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(200)
        page.screenshot(path=folder / f"case-{width}x{height}.png")
    page.set_viewport_size({"width": window[0], "height": window[1]})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=60, help="cases each way (default 60)")
    parser.add_argument("--block", type=int, default=10, help="cases per alternating block")
    parser.add_argument(
        "--think-ms", type=int, default=500, help="time on each case before answering"
    )
    parser.add_argument(
        "--window", default="1366x768", help="the browser window (default 1366x768, a laptop)"
    )
    parser.add_argument(
        "--screenshots",
        type=Path,
        help="save the first case at a laptop's, a tablet's and "
        "a phone's size in this folder, to look at",
    )
    args = parser.parse_args()
    if 2 * args.cases > 199:
        sys.exit("the demo study has 200 cases: at most 99 each way")
    from playwright.sync_api import sync_playwright

    width, height = (int(v) for v in args.window.split("x"))
    figures: dict[str, list[float]] = {"reload": [], "switch": []}
    confirmed: dict[str, list[float]] = {"reload": [], "switch": []}
    scrolled = 0
    with tempfile.TemporaryDirectory(prefix="bench-reader-") as tmp:
        data_dir, port = Path(tmp), free_port()
        started = time.monotonic()
        demo = start_demo(data_dir, port)
        print(f"demo ready in {time.monotonic() - started:.0f} s on port {port}", flush=True)
        try:
            password = json.loads((data_dir / "demo-credentials.json").read_text())["reader"]
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                context = browser.new_context(viewport={"width": width, "height": height})
                context.add_init_script(INIT)
                page = context.new_page()
                page.set_default_timeout(30_000)
                reach_first_case(page, f"http://127.0.0.1:{port}", password)
                if args.screenshots:
                    save_screenshots(page, args.screenshots, (width, height))
                ways = ["reload", "switch"]
                while min(len(v) for v in figures.values()) < args.cases:
                    for way in ways:
                        page.evaluate(f"localStorage.setItem('bench-way', '{way}')")
                        page.reload()  # the page reads the way when it starts
                        page.wait_for_function("sessionStorage.getItem('bench-shown')")
                        page.evaluate(
                            "sessionStorage.setItem('bench-shown', '[]');"
                            "sessionStorage.setItem('bench-confirmed', '[]')"
                        )
                        for _ in range(min(args.block, args.cases - len(figures[way]))):
                            scrolled += answer(page, way, args.think_ms)
                        figures[way] += [ms for ms in shown(page) if ms is not None]
                        confirmed[way] += [
                            ms for ms in shown(page, "bench-confirmed") if ms is not None
                        ]
                browser.close()
        finally:
            stop_demo(demo)
    answered = sum(len(v) for v in figures.values())
    print(f"window {args.window}: the case page scrolled on {scrolled} of {answered} cases")
    print(
        f"{'way':8} {'n':>4} {'median':>8} {'p95':>8} {'max':>8}   (ms, Enter -> the next "
        "case's images painted; then -> the server's reply, median and p95)"
    )
    for way, values in figures.items():
        replies = confirmed[way]
        print(
            f"{way:8} {len(values):4d} {statistics.median(values):8.1f} "
            f"{percentile(values, 0.95):8.1f} {max(values):8.1f}   "
            f"reply {statistics.median(replies):6.1f} {percentile(replies, 0.95):6.1f}"
        )
    ratio = statistics.median(figures["reload"]) / statistics.median(figures["switch"])
    print(f"ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
