"""Moderator console benchmark, on loopback: the queue page with 10,000 comments waiting, and
a decision's round trip from keystroke to the next comment shown, in a real browser.

Starts the API (uvicorn, the same app `commentguard serve` runs) on a fresh database holding
10,000 scored comments awaiting review, then measures:

1. `GET /console/queue` (the first page, least sure first, with the count of the whole queue):
   the server's own time (its `Server-Timing` header) and the client's, p50/p99 over N requests;
   also with a text search, which scans the queue.
2. In Debian's chromium through Playwright: `s`/`h` pressed on the selected comment, one after
   the other as a moderator works: keystroke → next comment selected (the page moves on at
   once), and keystroke → the server's answer swapped in (the label stored, the count updated).

The figures go into the `console` section of docs/benchmarks.md.

    .venv/bin/python bench/console.py                       # SQLite (about a minute)
    .venv/bin/python bench/console.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/console.py --requests 20 --decisions 10 --no-write
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path, and bench/classifier.py would shadow
# the classifier package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.report import machine, write_section  # noqa: E402

QUEUE_SIZE = 10_000
SECRET = "bench-console-secret-key-0123456789"
PASSWORD = "bench password"
# Every comment the model is not certain of is held for review: a queue of QUEUE_SIZE.
THRESHOLDS = {"unsure": 0.0, "spam": 1.0, "discard": 1.0}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_TIMING = re.compile(r"app;dur=([0-9.]+)")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the database ----------------------------------------------------------------------------


@contextlib.contextmanager
def database(postgres: str | None, folder: Path) -> Iterator[str]:
    """A fresh database URL (SQLite in `folder`, or a PostgreSQL database created and dropped)."""
    if not postgres:
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(postgres)
    name = f"cg_bench_console_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def model_folder(folder: Path) -> tuple[Path, str]:
    """The repository's active model if there is one, else a small one trained here."""
    from classifier.artifact import active_version, set_active

    repo_models = ROOT / "models"
    if active_version(repo_models) is not None:
        return repo_models, "the repository's active model"
    from training.corpora import load_bundled
    from training.train import train

    models = folder / "models"
    result = train(load_bundled(["youtube"])[:400], models)
    set_active(models, result.version)
    return models, "a small model trained for the run (400 YouTube comments)"


def seed(url: str, models: Path, size: int) -> None:
    """The schema, an admin with a password, one site and `size` scored comments to review."""
    from sqlalchemy import insert

    from classifier import Thresholds, load_model
    from service import db, security, tables, users
    from service.intake.sites import get_or_create_site
    from service.scoring.verdicts import to_record
    from service.settings import Settings
    from training.corpora import load_bundled

    settings = Settings(_env_file=None, database_url=url, secret_key=SECRET)  # type: ignore[call-arg]
    db.upgrade(settings)
    model = load_model(models)
    model.thresholds = Thresholds.from_dict(THRESHOLDS)
    corpus = load_bundled(["youtube", "sms", "instagram"])
    sql = db.make_engine(settings)
    with db.make_session_factory(sql)() as session:
        users.create_user(session, "bench", tables.UserRole.ADMIN, SECRET, PASSWORD)
        account = security.create_account_with_key(session, "bench", SECRET)
        site = get_or_create_site(session, account.account_id, "https://blog.example")
        session.commit()
        site_id = site.id
    now = tables.utcnow()
    for start in range(0, size, 2000):
        comments, verdicts = [], []
        rows = []
        for i in range(start, min(size, start + 2000)):
            example = corpus[i % len(corpus)]
            rows.append(
                tables.Comment(
                    id=uuid.uuid4(),
                    site_id=site_id,
                    status=tables.CommentStatus.SCORED.value,
                    is_test=False,
                    content=f"{example.comment.content} #{i}",
                    author=example.comment.author or f"reader {i}",
                    author_email=f"reader{i}@mail.example",
                    author_url="",
                    user_ip=f"203.0.{i // 250 % 250}.{i % 250}",
                    received_at=now,
                    extra={},
                )
            )
        scored = model.score_many([to_record(row) for row in rows])
        for row, verdict in zip(rows, scored, strict=True):
            comments.append({c: getattr(row, c) for c in (
                "id", "site_id", "status", "is_test", "content", "author", "author_email",
                "author_url", "user_ip", "received_at", "extra")})  # fmt: skip
            verdicts.append(
                {
                    "comment_id": row.id,
                    "score": verdict.score,
                    "decision": verdict.decision.value,
                    "reasons": [r.to_dict() for r in verdict.reasons],
                    "model_version": verdict.model_version,
                    "duration_ms": 0.0,
                    "scored_at": now,
                }
            )
        with sql.begin() as connection:
            connection.execute(insert(tables.Comment), comments)
            connection.execute(insert(tables.Verdict), verdicts)
    sql.dispose()


# --- the server ------------------------------------------------------------------------------


@contextlib.contextmanager
def server(url: str, models: Path, port: int) -> Iterator[str]:
    env = {
        **os.environ,
        "COMMENTGUARD_ENVIRONMENT": "local",
        "COMMENTGUARD_DATABASE_URL": url,
        "COMMENTGUARD_MODELS_DIR": str(models),
        "COMMENTGUARD_SECRET_KEY": SECRET,
        "COMMENTGUARD_LOG_LEVEL": "WARNING",
        "COMMENTGUARD_THRESHOLD_UNSURE": str(THRESHOLDS["unsure"]),
        "COMMENTGUARD_THRESHOLD_SPAM": str(THRESHOLDS["spam"]),
        "COMMENTGUARD_THRESHOLD_DISCARD": str(THRESHOLDS["discard"]),
    }
    env.pop("COMMENTGUARD_REDIS_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "service.api.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "--no-access-log"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)  # polling the server's start, bounded by the deadline
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


# --- measurements ----------------------------------------------------------------------------


def measure_queue(base: str, requests: int, path: str) -> dict[str, float]:
    """Server and client time of GET `path`, after a warm-up."""
    import httpx

    with httpx.Client(base_url=base, timeout=30) as client:
        form = client.get("/console/login")
        token = _CSRF.search(form.text)
        assert token
        login = client.post(
            "/console/login",
            data={"username": "bench", "password": PASSWORD, "csrf_token": token.group(1)},
        )
        assert login.status_code == 303, login.text
        for _ in range(5):
            assert client.get(path).status_code == 200
        server_ms, client_ms, items = [], [], 0
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(path)
            client_ms.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
            found = _TIMING.search(response.headers.get("server-timing", ""))
            assert found
            server_ms.append(float(found.group(1)))
            items = response.text.count('class="item"')
    return {
        "server_p50": percentile(server_ms, 0.5),
        "server_p99": percentile(server_ms, 0.99),
        "client_p50": percentile(client_ms, 0.5),
        "client_p99": percentile(client_ms, 0.99),
        "items": items,
    }


OBSERVE = """() => {
  window.__bench = {keys: [], selected: [], answered: []};
  const seen = new Set();
  const decided = node => {
    if (node.classList && node.classList.contains('decided') && !seen.has(node.id)) {
      seen.add(node.id);
      window.__bench.answered.push(performance.now());
    }
  };
  document.addEventListener('keydown', () => window.__bench.keys.push(performance.now()), true);
  new MutationObserver(records => {
    for (const r of records) {
      r.addedNodes.forEach(decided);
      if (r.type === 'attributes') {
        decided(r.target);
        if (r.target.classList.contains('current')) {
          window.__bench.selected.push(performance.now());
        }
      }
    }
  }).observe(document.getElementById('queue-items'),
             {childList: true, subtree: true, attributes: true, attributeFilter: ['class']});
}"""


def measure_decisions(base: str, decisions: int) -> dict[str, float]:
    """Keystroke → next comment selected, and keystroke → the server's answer swapped in."""
    from playwright.sync_api import sync_playwright

    to_selected: list[float] = []
    to_answered: list[float] = []
    server_ms: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(15_000)

        def on_response(response: Any) -> None:
            if response.request.method == "POST" and "/label" in response.url:
                found = _TIMING.search(response.headers.get("server-timing", ""))
                if found:
                    server_ms.append(float(found.group(1)))

        page.on("response", on_response)
        page.goto(f"{base}/console/login")
        page.get_by_label("User name").fill("bench")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r".*/console/queue.*"))
        done = 0
        per_page = 40  # fewer than a page (50), so each pass stays on one page
        while done < decisions:
            page.goto(f"{base}/console/queue")
            page.locator(".item.current").wait_for()
            page.evaluate(OBSERVE)
            batch = min(per_page, decisions - done)
            for k in range(batch):
                page.keyboard.press("s" if k % 2 else "h")
                page.wait_for_function(f"() => window.__bench.answered.length >= {k + 1}")
            stats = page.evaluate("() => window.__bench")
            for k in range(batch):
                key = stats["keys"][k]
                selected = [t for t in stats["selected"] if t >= key]
                to_selected.append(selected[0] - key if selected else float("nan"))
                to_answered.append(stats["answered"][k] - key)
            done += batch
        browser.close()
    return {
        "selected_p50": percentile(to_selected, 0.5),
        "selected_p99": percentile(to_selected, 0.99),
        "answered_p50": percentile(to_answered, 0.5),
        "answered_p99": percentile(to_answered, 0.99),
        "server_p50": percentile(server_ms, 0.5),
        "server_p99": percentile(server_ms, 0.99),
        "n": len(to_answered),
    }


# --- the report ------------------------------------------------------------------------------


def report(results: list[dict[str, Any]], requests: int, model: str) -> str:
    lines = [
        "## Moderator console",
        "",
        "Written by `bench/console.py`. The API under uvicorn on loopback, "
        f"{QUEUE_SIZE:,} scored comments awaiting review in one site, logged in as an admin; "
        f"{model}. Server time is the app's own (`Server-Timing`, from the request reaching "
        "the app to the response headers: queries, template, highlighting); client time adds "
        "HTTP on loopback. Targets: the queue page ≤ 200 ms server-side; a decision ≤ 100 ms "
        "from keystroke to the next comment shown.",
        "",
        f"Machine: {machine()}. Load average (1 min) during the runs: "
        + ", ".join(f"{r['database']} {r['load']:.1f}" for r in results)
        + f" on {os.cpu_count()} cores (other work was running: the p99s are mostly waiting for a"
        " core).",
        "",
        "| database | request | server p50 | server p99 | client p50 | client p99 |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        for label, key in (("queue, first page (50 of 10,000)", "queue"),
                           ("queue, text search", "search")):  # fmt: skip
            q = r[key]
            lines.append(
                f"| {r['database']} | {label} | {q['server_p50']:.1f} ms | "
                f"{q['server_p99']:.1f} ms | {q['client_p50']:.1f} ms | {q['client_p99']:.1f} ms |"
            )
    lines += [
        "",
        f"Each over {requests} requests after 5 warm-up ones.",
        "",
        "| database | decisions | keystroke → next comment selected p50 / p99 | keystroke → "
        "answer swapped in p50 / p99 | label request, server p50 / p99 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        d = r["decisions"]
        lines.append(
            f"| {r['database']} | {d['n']} | {d['selected_p50']:.1f} / {d['selected_p99']:.1f} ms"
            f" | {d['answered_p50']:.1f} / {d['answered_p99']:.1f} ms | "
            f"{d['server_p50']:.1f} / {d['server_p99']:.1f} ms |"
        )
    lines += [
        "",
        "The page selects the next comment as soon as the key is pressed and sends the label "
        "in the background; the answer (the comment's decided row and the queue's new count) "
        "replaces it when it comes. The second column is the honest round trip: the label is "
        "stored (with its audit row) and the whole queue counted again before it is shown.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--decisions", type=int, default=80)
    parser.add_argument("--size", type=int, default=QUEUE_SIZE)
    parser.add_argument("--postgres", help="also run on PostgreSQL (a database is created)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="cg-bench-console-") as tmp:
        folder = Path(tmp)
        models, model = model_folder(folder)
        kinds: list[tuple[str, str | None]] = [("SQLite", None)]
        if args.postgres:
            kinds.append(("PostgreSQL", args.postgres))
        for name, postgres in kinds:
            with database(postgres, folder) as url:
                started = time.perf_counter()
                seed(url, models, args.size)
                print(
                    f"{name}: seeded {args.size} comments in {time.perf_counter() - started:.1f}s"
                )
                with server(url, models, free_port()) as base:
                    result = {
                        "database": name,
                        "load": os.getloadavg()[0],
                        "queue": measure_queue(base, args.requests, "/console/queue"),
                        "search": measure_queue(base, args.requests, "/console/queue?q=song"),
                        "decisions": measure_decisions(base, args.decisions),
                    }
                print(result)
                results.append(result)
    markdown = report(results, args.requests, model)
    print(markdown)
    if not args.no_write:
        write_section("console", markdown)


if __name__ == "__main__":
    main()
