"""Akismet comment-check latency through the real Python client, on loopback.

Starts the API (uvicorn, one process, no Redis: comment-check scores in the request) on a fresh
SQLite database with the active model of `models/`, then times `akismet.SyncClient.comment_check`
calls one after another, each a new comment stored with its verdict, as a blog would send them.

    .venv/bin/python bench/akismet_client.py               # 2,000 calls; writes "## Akismet"
    .venv/bin/python bench/akismet_client.py --calls 200 --no-write

Target (issue 4): p50 ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path, and bench/classifier.py would shadow
# the classifier package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import akismet  # noqa: E402
import httpx  # noqa: E402

from bench.report import machine, write_section  # noqa: E402

AKISMET_VERSION = importlib.metadata.version("akismet")

TEXTS = [
    "Thanks for this write-up, the part about {n} saved me an afternoon.",
    "I disagree with point {n}, but the rest is spot on.",
    "Check out my channel http://bit.ly/x{n} subscribe!!!",
    "Great recipe, I added {n} cloves of garlic and it was perfect.",
    "Cheap pills online, best price, visit http://pharma{n}.example now",
]


class ToServer(httpx.BaseTransport):
    """Sends the client's requests for rest.akismet.com to the local server."""

    def __init__(self, base: str) -> None:
        self.base = httpx.URL(base)
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(
            scheme=self.base.scheme, host=self.base.host, port=self.base.port
        )
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def create_key(env: dict[str, str]) -> str:
    from service import db, security
    from service.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=env["COMMENTGUARD_DATABASE_URL"],
        secret_key=env["COMMENTGUARD_SECRET_KEY"],
    )
    db.upgrade(settings)
    engine = db.make_engine(settings)
    try:
        with db.make_session_factory(engine)() as session:
            key = security.create_account_with_key(session, "bench", settings.secret_key)
            session.commit()
    finally:
        engine.dispose()
    return key.plaintext


def wait_ready(url: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        # /healthz, not /readyz: without Redis the latter says 503, and comment-check needs
        # no Redis. The server answers only once its lifespan has loaded the model.
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed comment-checks")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls first")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    from classifier.artifact import active_version

    load_before = os.getloadavg()

    version = active_version(args.models_dir)
    if version is None:
        raise SystemExit(f"no active model in {args.models_dir}: run `commentguard train` first")

    with tempfile.TemporaryDirectory(prefix="cg-akismet-bench-") as folder:
        env = {
            **os.environ,
            "COMMENTGUARD_DATABASE_URL": f"sqlite:///{folder}/bench.db",
            "COMMENTGUARD_MODELS_DIR": str(args.models_dir),
            "COMMENTGUARD_DATA_DIR": folder,
            "COMMENTGUARD_SECRET_KEY": "bench-secret-key-not-for-production",
            "COMMENTGUARD_LOG_LEVEL": "WARNING",
        }
        env.pop("COMMENTGUARD_REDIS_URL", None)
        key = create_key(env)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "service.api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        server = subprocess.Popen(command, cwd=ROOT, env=env)
        try:
            wait_ready(url, server)
            http = httpx.Client(
                transport=ToServer(url), headers={"User-Agent": akismet.USER_AGENT}, timeout=5
            )
            config = akismet.Config(key=key, url="https://blog.example")
            with akismet.SyncClient(config=config, http_client=http) as client:
                answers: dict[str, int] = {}
                timings: list[float] = []
                for i in range(args.warmup + args.calls):
                    text = TEXTS[i % len(TEXTS)].format(n=i)
                    started = time.perf_counter()
                    answer = client.comment_check(
                        user_ip=f"198.51.100.{i % 250}",
                        user_agent="Mozilla/5.0 (X11; Linux x86_64)",
                        comment_type="comment",
                        comment_author=f"reader{i}",
                        comment_content=text,
                    )
                    elapsed = (time.perf_counter() - started) * 1000
                    if i >= args.warmup:
                        timings.append(elapsed)
                        answers[answer.name.lower()] = answers.get(answer.name.lower(), 0) + 1
        finally:
            server.terminate()
            server.wait(timeout=30)

    figures = {
        "calls": len(timings),
        "p50_ms": percentile(timings, 0.50),
        "p90_ms": percentile(timings, 0.90),
        "p99_ms": percentile(timings, 0.99),
        "mean_ms": statistics.fmean(timings),
        "max_ms": max(timings),
        "calls_per_second": len(timings) / (sum(timings) / 1000),
        "answers": answers,
        "model_version": version,
    }
    print(json.dumps(figures, indent=2))
    ok = figures["p50_ms"] <= 10
    text = f"""## Akismet

Command: `.venv/bin/python bench/akismet_client.py` ({figures["calls"]:,} timed calls after
{args.warmup} untimed). Machine: {machine()}; load average
{", ".join(f"{x:.1f}" for x in load_before)} when the run started (the client, the server and
anything else running share the cores).

`akismet.SyncClient.comment_check` (akismet {AKISMET_VERSION} from PyPI) against `uvicorn service.api.app:create_app`
on 127.0.0.1, one call at a time over one keep-alive connection. Each call is a new comment:
parsed, scored by model {version}, stored with its verdict in SQLite, answered.

| measure | figure | target | |
| --- | ---: | ---: | --- |
| comment-check p50 | {figures["p50_ms"]:.2f} ms | ≤ 10 ms | {"meets" if ok else "**misses**"} |
| comment-check p90 | {figures["p90_ms"]:.2f} ms | | |
| comment-check p99 | {figures["p99_ms"]:.2f} ms | | |
| mean / max | {figures["mean_ms"]:.2f} / {figures["max_ms"]:.1f} ms | | |
| sequential calls/s | {figures["calls_per_second"]:,.0f} | | |

Answers: {", ".join(f"{name} {count}" for name, count in sorted(answers.items()))}.
"""
    if not args.no_write:
        write_section("akismet", text)


if __name__ == "__main__":
    main()
