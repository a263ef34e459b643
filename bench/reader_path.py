"""CPU of one reader's answer in the web process, against the bare ``/health/`` view.

An answer is what a reader's browser asks for per case: the case page, its two images
and the submit. Both paths are timed: the page posting its form (``html``: case page,
images, form POST answered by a redirect) and the page's own script (``api``: the JSON
``POST answers/`` with ``next: true``, which carries the next case, and its images).
Everything runs in this process through Django's WSGI handler (as gunicorn calls it,
responses closed so that ``request_finished`` runs), on the embedded defaults
(``readerstudy.settings``: SQLite in a fresh data directory, the session engine and
connection settings those defaults choose; static URLs without collectstatic's
manifest), with a study of ``--cases`` demo cases
imported by the real importer and ``--readers`` enrolled readers, each logged in once
before the clock starts.

CPU is ``time.process_time()``. The runs are interleaved in rounds (``/health/``,
a reader answering every case through one path, ``/health/`` again, then the other path,
``/health/``), so that a busy machine slows both alike; each round's ratio is its
answers' CPU over the mean of the ``/health/`` blocks around it, and the figure is the
median over rounds. With ``--baseline REV`` the tree at that revision (``git archive``)
is measured first, in a process of its own, then the working tree.

Prints the per-round figures, then per path the CPU per answer and its ratio, and the
mean CPU of each kind of request (case page, image, form submit, API answer,
``/health/``); the last line is ``ratio X``, the html path's (the one ``make loadtest``
drives). Run from the repository root: ``python bench/reader_path.py [--readers 6
--cases 40]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
SLUG = "bench"
PASSWORD = "bench-pass-9-long"
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
CASE = re.compile(r'name="case" value="([^"]+)"')
IMAGE = re.compile(r'<img src="(/images/[^"]+)"')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=6, help="rounds: one reader each")
    parser.add_argument("--cases", type=int, default=40, help="answers per reader and path")
    parser.add_argument("--health", type=int, default=400, help="/health/ requests per block")
    parser.add_argument("--baseline", help="also measure the tree at this git revision")
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)  # internal: one tree
    return parser.parse_args()


# CPU seconds by kind of request, over the measured rounds: (count, seconds).
REQUESTS: dict[str, list] = {}


def request_kind(method: str, path: str) -> str:
    """What a request is, for the per-request split the run prints."""
    if path.startswith("/images/"):
        return "image"
    if path.startswith("/health/"):
        return "/health/"
    if "/api/" in path:
        return f"api {method}"
    if path.endswith("/case/"):
        return "case page" if method == "GET" else "form submit"
    return f"other {method}"


class Browser:
    """One reader's browser on the WSGI handler: cookies kept, no redirect followed."""

    def __init__(self, handler) -> None:
        self.handler, self.cookies, self.token = handler, {}, ""

    def request(self, method: str, path: str, *, data=None, json_body=None) -> tuple:
        """``(status, headers, body)``; the response is closed as a WSGI server does."""
        path, _, query = path.partition("?")
        body = b""
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_USER_AGENT": "bench/reader_path",
            "HTTP_ACCEPT_LANGUAGE": "en",
            "wsgi.url_scheme": "http",
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.errors": sys.stderr,
            # as gunicorn's sendfile: the file's bytes are not copied through Python
            "wsgi.file_wrapper": lambda handle, block_size=8192: _Sent(handle),
        }
        if data is not None:
            body = urlencode(data).encode()
            environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            body = json.dumps(json_body).encode()
            environ["CONTENT_TYPE"] = "application/json"
        if method == "POST":
            environ["HTTP_X_CSRFTOKEN"] = self.token
            environ["HTTP_REFERER"] = "http://127.0.0.1/"
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = io.BytesIO(body)
        if self.cookies:
            environ["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        started = {}

        def start_response(status, headers, exc_info=None):
            started["status"], started["headers"] = int(status.split()[0]), headers

        clock = time.process_time()
        response = self.handler(environ, start_response)
        try:
            content = b"".join(response)
        finally:
            response.close()
        spent = REQUESTS.setdefault(request_kind(method, path), [0, 0.0])
        spent[0] += 1
        spent[1] += time.process_time() - clock
        for name, value in started["headers"]:
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";", 1)[0]
        return started["status"], dict(started["headers"]), content

    def login(self, username: str) -> None:
        _, _, page = self.request("GET", "/accounts/login/")
        token = CSRF.search(page.decode()).group(1)
        status, _, _ = self.request(
            "POST",
            "/accounts/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
        )
        assert status == 302, f"login: HTTP {status}"


class _Sent:
    def __init__(self, handle) -> None:
        self.handle = handle

    def __iter__(self):
        return iter(())

    def close(self) -> None:
        self.handle.close()


def answer_html(browser: Browser, slug: str) -> bool:
    """Case page, its images, the form's POST; False once the reader is done."""
    status, _, page = browser.request("GET", f"/studies/{slug}/case/")
    if status == 302:
        return False
    assert status == 200, f"case page: HTTP {status}"
    text = page.decode()
    for url in IMAGE.findall(text):
        assert browser.request("GET", url)[0] == 200
    form = {
        "csrfmiddlewaretoken": CSRF.search(text).group(1),
        "case": CASE.search(text).group(1),
        "answer": "MN",
        "confidence": "3",
    }
    status, _, _ = browser.request("POST", f"/studies/{slug}/case/", data=form)
    assert status == 302, f"submit: HTTP {status}"
    return True


def open_page(browser: Browser, slug: str) -> dict:
    """The case page as the script starts from it: its case, its images loaded, and the
    page's CSRF token for the script's requests (the cookie is HTTP-only)."""
    status, _, page = browser.request("GET", f"/studies/{slug}/case/")
    assert status == 200, f"case page: HTTP {status}"
    text = page.decode()
    for url in IMAGE.findall(text):
        assert browser.request("GET", url)[0] == 200
    browser.token = CSRF.search(text).group(1)
    return {"case": {"id": CASE.search(text).group(1)}}


def answer_api(browser: Browser, slug: str, screen: dict) -> dict | None:
    """The page's script: POST answers/ with next, then the next case's images (the
    page loaded them ahead); the next screen, or None once done."""
    case = screen["case"]
    status, _, body = browser.request(
        "POST",
        f"/api/reader/studies/{slug}/answers/",
        json_body={"case": case["id"], "answer": "MN", "confidence": 3, "next": True},
    )
    assert status == 201, f"answer: HTTP {status} {body[:300]!r}"
    following = json.loads(body)["next"]
    if following["case"] is None:
        return None
    for url in following["case"]["images"].values():
        assert browser.request("GET", url.removeprefix("http://127.0.0.1"))[0] == 200
    return following


def seed(n_cases: int, n_readers: int, data_dir: Path) -> list[str]:
    """A study of demo cases (imported, opened) and ``2 * n_readers`` enrolled readers
    with consent and profile: one per round and path."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command

    from cases.importing import cases_import
    from cases.models import Study
    from cases.services import enrolment_create, profile_save
    from demo.services import demo_cases, write_demo_bundle

    call_command("migrate", verbosity=0)
    bundle = data_dir / "bundle"
    write_demo_bundle(bundle, demo_cases(seed=0, per_class=-(-n_cases // 8))[:n_cases], seed=0)
    study = cases_import(slug=SLUG, source=bundle).study
    Study.objects.filter(pk=study.pk).update(status=Study.Status.OPEN)
    study.refresh_from_db()
    hashed = make_password(PASSWORD)
    names = []
    for i in range(2 * n_readers):
        user = get_user_model().objects.create(username=f"bench-{i:03d}", password=hashed)
        profile_save(user=user, level="attending", years_in_dermatology=8)
        enrolment_create(study=study, reader=user, seed=i, consent=True)
        names.append(user.username)
    return names


def measure_tree(args: argparse.Namespace) -> dict:
    """Every round on this interpreter's tree; the figures as a dict."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "readerstudy.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    # Static URLs without the manifest that collectstatic writes (it would take longer
    # than the run): a dictionary lookup less per URL.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    from django.db import connection

    names = seed(args.cases, args.readers, Path(settings.DATA_DIR))
    handler = WSGIHandler()
    health = Browser(handler)
    browsers = []
    for name in names:
        browser = Browser(handler)
        browser.login(name)
        browsers.append(browser)

    def health_block() -> float:
        started = time.process_time()
        for _ in range(args.health):
            assert health.request("GET", "/health/")[0] == 200
        return (time.process_time() - started) / args.health

    health_block()  # warm-up: imports, URL resolver, template loading
    REQUESTS.clear()  # only the measured rounds
    rounds = {"html": [], "api": []}
    before = health_block()
    for i in range(args.readers):
        for path in ("html", "api"):
            browser = browsers[2 * i + (path == "api")]
            started = time.process_time()
            answers = 0
            if path == "html":
                while answer_html(browser, SLUG):
                    answers += 1
            else:  # the page once (it serves the first case), then its script
                screen = open_page(browser, SLUG)
                while screen is not None:
                    screen = answer_api(browser, SLUG, screen)
                    answers += 1
            per_answer = (time.process_time() - started) / answers
            after = health_block()
            per_health = (before + after) / 2
            rounds[path].append({"answer_ms": per_answer * 1e3, "health_ms": per_health * 1e3})
            print(
                f"  round {i + 1} {path:<4} {answers} answers: {per_answer * 1e3:6.2f} ms CPU "
                f"per answer, /health/ {per_health * 1e3:5.3f} ms, "
                f"ratio {per_answer / per_health:5.1f}",
                file=sys.stderr,
                flush=True,
            )
            before = after
    return {
        "session_engine": settings.SESSION_ENGINE,
        "conn_max_age": connection.settings_dict["CONN_MAX_AGE"],
        "rounds": rounds,
        "requests": {kind: {"n": n, "ms": 1e3 * sec / n} for kind, (n, sec) in REQUESTS.items()},
    }


def summary(label: str, figures: dict) -> float:
    """Print the medians of one tree; return the html path's ratio."""
    print(
        f"{label}: session engine {figures['session_engine']}, "
        f"CONN_MAX_AGE {figures['conn_max_age']}"
    )
    ratios = {}
    for path, rounds in figures["rounds"].items():
        answer = statistics.median(r["answer_ms"] for r in rounds)
        health = statistics.median(r["health_ms"] for r in rounds)
        ratios[path] = statistics.median(r["answer_ms"] / r["health_ms"] for r in rounds)
        print(
            f"  {path:<4} {answer:6.2f} ms CPU per answer (median of {len(rounds)} rounds), "
            f"/health/ {health:5.3f} ms, ratio {ratios[path]:.1f}"
        )
    # Where an answer's CPU goes: each kind of request, its mean CPU over the run.
    split = ", ".join(
        f"{kind} {r['ms']:.2f} ms (x{r['n']})"
        for kind, r in sorted(figures.get("requests", {}).items())
    )
    if split:
        print(f"  per request: {split}")
    return ratios["html"]


def run_tree(tree: Path, args: argparse.Namespace) -> dict:
    """``measure_tree`` in a fresh interpreter on ``tree`` with its own data directory."""
    with tempfile.TemporaryDirectory(prefix="readerstudy-bench-") as data_dir:
        (Path(data_dir) / "static").mkdir()  # STATIC_ROOT, empty: static files unused
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "DATABASE_URL", "CELERY_", "READERSTUDY_", "CACHE"))
        }
        env.update(DJANGO_SETTINGS_MODULE="readerstudy.settings", READERSTUDY_DATA_DIR=data_dir)
        command = [sys.executable, str(Path(__file__).resolve()), "--tree", str(tree)]
        command += ["--readers", str(args.readers), "--cases", str(args.cases)]
        command += ["--health", str(args.health)]
        done = subprocess.run(command, cwd=tree, env=env, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the run on {tree} failed ({done.returncode})")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    args = parse_args()
    if args.tree is not None:  # one tree, in this interpreter
        sys.path.insert(0, str(args.tree))
        # The editable install's finder would fill in modules the tree lacks from the
        # working tree.
        sys.meta_path = [f for f in sys.meta_path if "__editable__" not in f.__module__]
        print(json.dumps(measure_tree(args)))
        return 0
    print(
        f"{args.readers} rounds x {args.cases} answers per path, {args.health} /health/ "
        f"requests per block; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the start",
        flush=True,
    )
    if args.baseline:
        with tempfile.TemporaryDirectory(prefix="readerstudy-baseline-") as tree:
            archive = subprocess.run(
                ["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True
            ).stdout
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(tree, filter="data")
            print(f"baseline {args.baseline}:", flush=True)
            summary(f"baseline {args.baseline}", run_tree(Path(tree), args))
    print("working tree:", flush=True)
    ratio = summary("working tree", run_tree(ROOT, args))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"ratio {ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
