"""Load benchmark of the scoring service, on loopback only, bounded in count and time.

Starts `commentguard serve` (embedded Redis, scoring and callback workers, beat) on a fresh
SQLite database, then measures:

1. `POST /v1/check` at a fixed concurrency (closed loop): requests/s, p50/p99 latency.
2. `POST /v1/comments` at a fixed offered rate (open loop), each with a callback_url pointing
   at a receiver in this process: accepted/s, and acceptance → callback received p50/p99.

The figures go into the "## Service" section of docs/benchmarks.md (other sections are kept).

    .venv/bin/python bench/service_load.py                  # the full run (about 2 minutes)
    .venv/bin/python bench/service_load.py --check-seconds 5 --webhook-seconds 10 --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path, and bench/classifier.py would shadow
# the classifier package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Service"
CONTENT = "Thanks for this write-up, the part about {n} saved me an afternoon. http://ex{m}.example"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- a minimal keep-alive HTTP/1.1 client (cheap enough not to be the bottleneck) -----------


class Connection:
    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.key = key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --- the callback receiver ----------------------------------------------------------------


@dataclass
class Receiver:
    received: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    # Label callbacks (`"event": "label"`, sent when a moderator labels a comment) are counted
    # apart: they name a comment already called back, and are no duplicate verdicts.
    labels: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readline()
                if not request:
                    return
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                payload = json.loads(body)
                comment_id = payload["id"]
                if payload.get("event") == "label":
                    self.labels += 1
                elif comment_id in self.received:
                    self.duplicates += 1
                else:
                    self.received[comment_id] = time.perf_counter()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            writer.close()


# --- the phases ---------------------------------------------------------------------------


async def check_phase(port: int, key: str, concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    done_all = 0
    per_connection: dict[int, list[float]] = {}
    warmup_end = time.perf_counter() + 2.0
    end = warmup_end + seconds

    async def loop(slot: int) -> None:
        nonlocal errors, done_all
        connection = Connection(port, key)
        n = 0
        try:
            while (now := time.perf_counter()) < end:
                body = json.dumps(
                    {"content": CONTENT.format(n=n, m=slot), "author": f"user{slot}",
                     "blog": "https://bench.example"}
                ).encode()  # fmt: skip
                status, _ = await connection.post("/v1/check", body)
                done = time.perf_counter()
                done_all += 1
                if now >= warmup_end:
                    if status == 200:
                        latencies.append(done - now)
                        per_connection.setdefault(slot, []).append(done - now)
                    else:
                        errors += 1
                        statuses[status] = statuses.get(status, 0) + 1
                n += 1
        finally:
            connection.close()

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    return {
        "requests": len(latencies),
        "all_requests": done_all,
        "errors": errors,
        "rps": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p90_ms": percentile(latencies, 0.9) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        # How evenly the API processes share the connections: each connection's median.
        "connection_p50_ms": [
            min(percentile(v, 0.5) for v in per_connection.values()) * 1000,
            max(percentile(v, 0.5) for v in per_connection.values()) * 1000,
        ]
        if per_connection
        else [float("nan"), float("nan")],
        "error_statuses": statuses,
    }


async def webhook_phase(
    port: int,
    key: str,
    rate: float,
    seconds: float,
    callback_port: int,
    receiver: Receiver,
    tag: str = "main",
) -> dict[str, float]:
    accepted: dict[str, float] = {}
    intake: list[float] = []
    errors = 0
    total = int(rate * seconds)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(Connection(port, key))
    callback = f"http://127.0.0.1:{callback_port}/hook"
    start = time.perf_counter() + 0.5

    async def one(i: int) -> None:
        nonlocal errors
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        scheduled = start + i / rate
        connection = await pool.get()
        try:
            body = json.dumps(
                {"external_id": f"bench-{tag}-{i}", "content": CONTENT.format(n=i, m=i % 97),
                 "author": "someone", "blog": "https://bench.example", "callback_url": callback}
            ).encode()  # fmt: skip
            status, response = await connection.post("/v1/comments", body)
            now = time.perf_counter()
            if status == 202:
                accepted[json.loads(response)["id"]] = now
                intake.append(now - scheduled)
            else:
                errors += 1
        finally:
            pool.put_nowait(connection)

    await asyncio.gather(*(one(i) for i in range(total)))
    sent_for = time.perf_counter() - start
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline and not set(accepted) <= set(receiver.received):
        await asyncio.sleep(0.1)
    while not pool.empty():
        pool.get_nowait().close()
    e2e = [receiver.received[c] - t for c, t in accepted.items() if c in receiver.received]
    return {
        "offered": total,
        "offered_rate": rate,
        "accepted": len(accepted),
        "errors": errors,
        "accepted_per_s": len(accepted) / sent_for,
        "intake_p99_ms": percentile(intake, 0.99) * 1000,
        "callbacks": len(e2e),
        "duplicates": receiver.duplicates,
        "e2e_p50_ms": percentile(e2e, 0.5) * 1000,
        "e2e_p99_ms": percentile(e2e, 0.99) * 1000,
    }


# --- the service --------------------------------------------------------------------------


def service_env(
    folder: Path, models_dir: Path, callback_port: int, database_url: str | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMENTGUARD_")}
    env.update(
        COMMENTGUARD_DATABASE_URL=database_url or f"sqlite:///{folder / 'var' / 'commentguard.db'}",
        COMMENTGUARD_DATA_DIR=str(folder / "var"),
        COMMENTGUARD_MODELS_DIR=str(models_dir),
        COMMENTGUARD_CALLBACK_ALLOWED_HOSTS=f"127.0.0.1:{callback_port}",
        COMMENTGUARD_LOG_LEVEL="WARNING",
        # The limits stay on (leasing requests from Redis is part of the cost), set far above
        # what one machine can send: this measures capacity, not the limits. Logs at WARNING:
        # no access line per request.
        COMMENTGUARD_RATE_LIMIT_PER_KEY="10000000",
        COMMENTGUARD_RATE_LIMIT_PER_IP="10000000",
    )
    return env


def ensure_model(models_dir: Path) -> None:
    from classifier.artifact import active_version, set_active
    from training.train import train_default

    if active_version(models_dir) is None:
        print(f"training the default model into {models_dir} ...", flush=True)
        set_active(models_dir, train_default(models_dir).version)


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"serve exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("serve did not become ready")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()}; load average before the run {load}; CPU probe "
        f"{cpu_probe_ms():.0f} ms (a pure-Python loop, best of 5: machines of this kind measured "
        "from 30 to 89 ms on 2026-11-30, and the service's figures move with it)"
    )


def cpu_probe_ms() -> float:
    """How fast this machine runs Python right now: `sum(i * i for i in range(10**6))`."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        sum(i * i for i in range(1_000_000))
        best = min(best, time.perf_counter() - started)
    return best * 1000


START, END = "<!-- service:start -->", "<!-- service:end -->"


def with_section(document: str, text: str) -> str:
    """`document` with the service section (between its markers) replaced, or added on top."""
    block = f"{START}\n{text.strip()}\n{END}\n"
    marked = re.compile(rf"^{re.escape(START)}\n.*?^{re.escape(END)}\n?", re.S | re.M)
    if marked.search(document):
        return marked.sub(lambda _m: block, document)
    # An unmarked section from an older run ends at the next heading or marker.
    document = re.sub(
        rf"^{re.escape(SECTION)}\n.*?(?=^## |^<!-- |\Z)", "", document, flags=re.S | re.M
    )
    title, _, rest = document.partition("\n")
    if not title.startswith("# "):
        title, rest = "# Benchmarks", document
    return f"{title}\n\n{block}\n{rest.lstrip()}".rstrip("\n") + "\n"


def write_section(text: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    current = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    DOC.write_text(with_section(current, text))


def report(
    args: argparse.Namespace,
    check: dict[str, float],
    hook: dict[str, float],
    extra: list[dict[str, float]],
) -> str:
    command = "python bench/service_load.py " + " ".join(sys.argv[1:])
    ok = lambda good: "met" if good else "**missed**"  # noqa: E731
    return f"""{SECTION}

`{command.strip()}` on {time.strftime("%Y-%m-%d")}; {args.machine}. Everything on one machine over
loopback: `commentguard serve --api-workers {args.api_workers} --workers-concurrency \
{args.worker_concurrency}` (embedded Redis, prefork scoring workers, a threaded callback worker,
beat; {"PostgreSQL" if args.postgres else "SQLite"}), the load generator and the callback receiver (one asyncio process) share the
same {os.cpu_count()} cores. Model: the default model, scoring with reasons.

| measure | result | target |
| --- | --- | --- |
| `POST /v1/check`, concurrency {args.check_concurrency}, {args.check_seconds:.0f} s | \
{check["rps"]:.0f} req/s, p50 {check["p50_ms"]:.1f} ms, p90 {check["p90_ms"]:.1f} ms, \
p99 {check["p99_ms"]:.1f} ms, {check["errors"]:.0f} errors (each connection's p50 from \
{check["connection_p50_ms"][0]:.1f} to {check["connection_p50_ms"][1]:.1f} ms); service CPU {check["cpu_ms"]:.1f} ms/request | ≥ 800 req/s ({ok(check["rps"] >= 800)}), p99 ≤ 50 ms \
({ok(check["p99_ms"] <= 50)}) |
| `POST /v1/comments` offered at {hook["offered_rate"]:.0f}/s for {args.webhook_seconds:.0f} s \
| {hook["accepted"]:.0f}/{hook["offered"]:.0f} accepted ({hook["accepted_per_s"]:.0f}/s), \
intake p99 {hook["intake_p99_ms"]:.1f} ms, {hook["errors"]:.0f} errors; service CPU \
{hook["cpu_ms"]:.1f} ms/comment (intake, scoring, callback) | all accepted \
({ok(hook["accepted"] == hook["offered"])}) |
| acceptance → signed callback received | {hook["callbacks"]:.0f}/{hook["accepted"]:.0f} \
delivered, {hook["duplicates"]:.0f} duplicates, p50 {hook["e2e_p50_ms"]:.0f} ms, \
p99 {hook["e2e_p99_ms"]:.0f} ms | all delivered \
({ok(hook["callbacks"] == hook["accepted"])}), p99 ≤ 1 s ({ok(hook["e2e_p99_ms"] <= 1000)}) |
{"".join(_extra_row(args, row) for row in extra)}
CPU per request (ms), by kind of process, over each phase:

{cpu_table([("`/v1/check`", check), *((f"webhook {r['offered_rate']:.0f}/s", r) for r in extra), (f"webhook {hook['offered_rate']:.0f}/s", hook)])}
Service CPU is the CPU time of the service's own processes (API, workers, beat, Redis) per
request, so it does not depend on what else the machine runs: with both cores given to the
service alone, that caps `/v1/check` at about {2000 / check["cpu_ms"]:.0f} req/s and the
webhook path at about {2000 / hook["cpu_ms"]:.0f} comments/s. What each request costs now:

- `/v1/check`: uvicorn, the middleware (request id, rate limits: one Redis round trip per
  lease of requests), FastAPI validation and serialisation on the event loop; then the batch
  the request joins (service/intake/batching.py): on the event loop, one call into the model for
  the checks read in one turn of the loop; in a thread, one Redis round trip to the
  near-duplicate memory and one INSERT statement for the comments and their verdicts (one
  round trip, in autocommit). Each API process serves the connections the supervisor
  accepts and hands out in turn (service/api_processes.py).
- A webhook comment: the same request handling, a batch INSERT, and one Celery message for
  whatever the API committed within 50 ms (`COMMENTGUARD_QUEUE_LINGER_SECONDS`); in the
  scoring worker, one read, one call into the model, one transaction for the batch's
  verdicts, statuses and deliveries (first attempts claimed), the signed POSTs in parallel
  from the worker's threads and one transaction recording them. Beyond the rate the service
  can sustain, the scoring queue grows for as long as the offered rate lasts, so the
  end-to-end latency grows with the run's length, while every comment is still scored once
  and called back.
- The load generator and the callback receiver (one Python process) take CPU from the same
  cores as the service; so do other jobs on a shared machine (see the load average).
- The service logs at WARNING during the run (no access line per request); the rate limits
  are on, set far above what the load generator sends.

"""


BENCH_DATABASE = "commentguard_bench"


SERVICE_ROLES = (
    "serve",
    "api",
    "scoring worker",
    "callback worker",
    "retraining worker",
    "beat",
    "redis",
    "postgres",
)
LOAD_ROLE = "load generator"


def _role(process: Any, root_pid: int) -> str:
    if process.pid == root_pid:
        return "serve"
    title = " ".join(process.info["cmdline"] or [])
    for needle, role in (
        ("spawn_main", "api"),
        ("--queues scoring", "scoring worker"),
        ("--queues callbacks", "callback worker"),
        ("--queues retraining", "retraining worker"),
        (" beat", "beat"),
        ("redis-server", "redis"),
    ):
        if needle in title:
            return role
    return "serve"


def cpu_by_role(pid: int) -> dict[str, float]:
    """CPU seconds used so far by each kind of the service's processes (API, workers, beat,
    Redis, and the PostgreSQL backends serving the bench database when there are any), and by
    this process (the load generator and the callback receiver)."""
    import psutil

    seconds = dict.fromkeys((*SERVICE_ROLES, LOAD_ROLE), 0.0)
    root = psutil.Process(pid)
    found: list[tuple[str, Any]] = [(LOAD_ROLE, psutil.Process())]
    for process in psutil.process_iter(["name", "cmdline"]):
        title = " ".join(process.info["cmdline"] or [])
        if process.info["name"] == "postgres" and f" {BENCH_DATABASE} " in title:
            found.append(("postgres", process))
    for process in [root, *root.children(recursive=True)]:
        try:
            process.info = {"cmdline": process.cmdline()}
        except psutil.Error:
            continue
        found.append((_role(process, pid), process))
    for role, process in found:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seconds[role] += times.user + times.system
    return seconds


class CpuMeter:
    """CPU per request over a phase: the service's in all, and each kind of process's."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = cpu_by_role(pid)

    def per_request(self, row: dict[str, Any], requests: float) -> None:
        after = cpu_by_role(self.pid)
        ms = {role: (after[role] - self.before[role]) * 1000 / max(1, requests) for role in after}
        row["cpu_ms"] = sum(ms[role] for role in SERVICE_ROLES)
        row["cpu_roles"] = {role: round(value, 3) for role, value in ms.items()}


def cpu_table(columns: list[tuple[str, dict[str, Any]]]) -> str:
    """Milliseconds of CPU per request, by kind of process, one column per phase."""
    head = "| process | " + " | ".join(name for name, _ in columns) + " |\n"
    head += "| --- |" + " ---: |" * len(columns) + "\n"
    rows = []
    for role in (*SERVICE_ROLES, LOAD_ROLE):
        values = [row["cpu_roles"][role] for _, row in columns]
        if max(values) >= 0.005:
            rows.append(f"| {role} | " + " | ".join(f"{v:.2f}" for v in values) + " |\n")
    total = (
        "| **service, in all** | "
        + " | ".join(f"**{row['cpu_ms']:.2f}**" for _, row in columns)
        + " |\n"
    )
    return head + "".join(rows) + total


def _extra_row(args: argparse.Namespace, row: dict[str, float]) -> str:
    return (
        f"| `POST /v1/comments` at {row['offered_rate']:.0f}/s for {args.extra_seconds:.0f} s "
        f"→ callback | {row['accepted']:.0f}/{row['offered']:.0f} accepted, "
        f"{row['callbacks']:.0f} delivered, p50 {row['e2e_p50_ms']:.0f} ms, "
        f"p99 {row['e2e_p99_ms']:.0f} ms; service CPU {row['cpu_ms']:.1f} ms/comment | |\n"
    )


async def run(args: argparse.Namespace, port: int, key: str, callback_port: int, pid: int) -> None:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", callback_port)
    print(f"/v1/check at concurrency {args.check_concurrency} ...", flush=True)
    meter = CpuMeter(pid)
    check = await check_phase(port, key, args.check_concurrency, args.check_seconds)
    # Per request, warm-up included: what the service costs, whatever else runs here.
    meter.per_request(check, check["all_requests"])
    print(json.dumps(check), flush=True)
    # The lower rates first, while the queue is empty: each phase waits for its callbacks.
    extra = []
    for rate in args.extra_rates:
        print(f"webhook at {rate}/s for {args.extra_seconds}s ...", flush=True)
        meter = CpuMeter(pid)
        row = await webhook_phase(
            port, key, rate, args.extra_seconds, callback_port, receiver, tag=f"r{rate:g}"
        )
        meter.per_request(row, row["accepted"])
        extra.append(row)
        print(json.dumps(extra[-1]), flush=True)
    print(f"webhook at {args.rate}/s for {args.webhook_seconds}s ...", flush=True)
    meter = CpuMeter(pid)
    hook = await webhook_phase(port, key, args.rate, args.webhook_seconds, callback_port, receiver)
    meter.per_request(hook, hook["accepted"])
    print(json.dumps(hook), flush=True)
    server.close()
    text = report(args, check, hook, extra)
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"written to {DOC}")


@contextlib.contextmanager
def bench_database(args: argparse.Namespace) -> Iterator[str | None]:
    """A fresh PostgreSQL database for the run (dropped after it), or None for SQLite."""
    if not args.postgres:
        yield None
        return
    import psycopg

    server = args.postgres.rstrip("/").replace("postgresql+psycopg://", "postgresql://")
    drop = f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(drop)
        connection.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    try:
        yield f"{args.postgres.rstrip('/')}/{BENCH_DATABASE}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
            connection.execute(drop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check-seconds", type=float, default=20.0)
    parser.add_argument("--check-concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=300.0, help="offered webhook rate (/s)")
    parser.add_argument("--webhook-seconds", type=float, default=60.0)
    parser.add_argument(
        "--extra-rates",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=[50.0, 150.0],
        help="lower webhook rates to measure too, comma-separated ('' for none)",
    )
    parser.add_argument("--extra-seconds", type=float, default=15.0)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=os.cpu_count() or 1,
        help="scoring worker processes (serve's default: one per core)",
    )
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="a PostgreSQL server (e.g. postgresql+psycopg://postgres@127.0.0.1:5432) on which "
        f"to create, use and drop a {BENCH_DATABASE} database, instead of SQLite",
    )
    parser.add_argument("--no-write", action="store_true", help="print, don't edit the docs")
    args = parser.parse_args()
    # Bounded: at most 10 minutes of load in all, whatever the flags say.
    args.check_seconds = min(args.check_seconds, 300.0)
    args.webhook_seconds = min(args.webhook_seconds, 300.0)
    args.rate = min(args.rate, 2000.0)
    args.extra_seconds = min(args.extra_seconds, 60.0)
    args.extra_rates = [min(rate, 2000.0) for rate in args.extra_rates[:3]]

    ensure_model(args.models_dir)
    args.machine = machine()  # before the service runs: its load average, the CPU probe
    port, callback_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="cg-bench-") as tmp, bench_database(args) as url:
        folder = Path(tmp)
        env = service_env(folder, args.models_dir.resolve(), callback_port, url)
        cli = [sys.executable, "-m", "service.cli"]
        subprocess.run([*cli, "db", "upgrade"], env=env, cwd=folder, check=True)
        created = subprocess.run(
            [*cli, "keys", "create", "--name", "bench"],
            env=env, cwd=folder, check=True, capture_output=True, text=True,
        )  # fmt: skip
        key = created.stdout.strip().splitlines()[-1]
        serve = subprocess.Popen(
            [*cli, "serve", "--port", str(port), "--api-workers", str(args.api_workers),
             "--workers-concurrency", str(args.worker_concurrency)],
            env=env, cwd=folder,
        )  # fmt: skip
        try:
            wait_ready(port, serve)
            asyncio.run(run(args, port, key, callback_port, serve.pid))
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(60)
            except subprocess.TimeoutExpired:
                serve.kill()


if __name__ == "__main__":
    main()
