"""commentguard beside Rspamd, on the same comments, the same client and the same machine.

Both filters are trained on the same comments: the UCI YouTube comments less one video (leave
one video out), and both score that video's comments. Rspamd 3.4 from Debian (installed when
missing, as root) runs from a scratch folder with a minimal, loopback-only config: the stock
rules with every module that would ask the network (DNS lists, SPF, DKIM, fuzzy, maps) turned
off and DNS pointed at a closed loopback port, its Bayes classifier in a private Redis on a port
of its own, learned through the controller (`/learnspam`, `/learnham`), each comment wrapped as
a plain RFC 5322 message and checked with `POST /checkv2`. commentguard is trained with
`training.train` into a scratch models folder and runs as `commentguard serve --api-workers 2`
(embedded Redis, SQLite, rate limits on and set far above what is sent), checked with
`POST /v1/check`.

The same asyncio client drives both, closed loop, at concurrency 1, 8 and 32 (one connection
per slot, kept alive where the server keeps it: Rspamd 3.4's worker closes every connection
after its answer, so its client connects again for each comment). Phases alternate between
the filters, in rounds, so that both see the same machine; CPU per comment counts the filter's
own processes only (Rspamd's and its Redis; serve and everything it starts).

    .venv/bin/python bench/peers.py                         # 5-6 minutes; writes the docs
    .venv/bin/python bench/peers.py --seconds 4 --rounds 1 --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path, and bench/classifier.py would shadow
# the classifier package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from bench.service_load import free_port, machine, percentile, service_env  # noqa: E402

SECTION = "peers"
CONCURRENCIES = (1, 8, 32)
BLOG = "https://bench.example"
# Modules of Rspamd's stock config that ask DNS or fetch over HTTP, or need Redis for more than
# Bayes: none of them has anything to say about a comment here, and all of them would reach
# out of the machine.
RSPAMD_OFF = [
    "arc",
    "asn",
    "clickhouse",
    "dcc",
    "dkim",
    "dkim_signing",
    "dmarc",
    "elastic",
    "emails",
    "fuzzy_check",
    "greylist",
    "hfilter",
    "history_redis",
    "metric_exporter",
    "mx_check",
    "neural",
    "phishing",
    "ratelimit",
    "rbl",
    "replies",
    "reputation",
    "rspamd_update",
    "spf",
    "surbl",
    "url_redirector",
    "whitelist",
]
# Rspamd's own decision: the actions at which a message is treated as spam.
RSPAMD_SPAM_ACTIONS = frozenset({"reject", "add header", "rewrite subject"})
COMMENTGUARD_SPAM_DECISIONS = frozenset({"spam", "discard"})


# --- the client ---------------------------------------------------------------------------


class Client:
    """One HTTP/1.1 connection, kept alive unless the server says `Connection: close`."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connects = 0

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.connects += 1
        assert self.reader is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.head}"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        status = int((await self.reader.readline()).split()[1])
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        answer = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# --- the filters --------------------------------------------------------------------------


@dataclass
class Filter:
    """A running filter: how to ask it, how to read its answer, and its processes."""

    name: str
    port: int
    path: str
    headers: dict[str, str]
    encode: Callable[[Any, int], bytes]  # (example, n) -> request body
    decode: Callable[[bytes], tuple[float, bool]]  # answer -> (score, spam by its own rule)
    pids: list[int]  # roots of its process trees
    results: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


def message(example: Any, n: int) -> bytes:
    """A comment as Rspamd reads mail: a plain RFC 5322 message, the comment as its body."""
    comment = example.comment
    author = (comment.author or "someone").replace("\r", " ").replace("\n", " ")
    date = format_datetime(comment.created_at or datetime(2026, 1, 1, tzinfo=UTC))
    return (
        f"From: {author} <commenter{n}@comments.invalid>\r\n"
        "To: Moderation <moderation@bench.invalid>\r\n"
        "Subject: A new comment\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@bench.invalid>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"{comment.content}\r\n"
    ).encode()


def rspamd_answer(answer: bytes) -> tuple[float, bool]:
    result = json.loads(answer)
    return float(result["score"]), result["action"] in RSPAMD_SPAM_ACTIONS


def check_body(example: Any, n: int) -> bytes:
    comment = example.comment
    return json.dumps(
        {"content": comment.content, "author": comment.author or "someone", "blog": BLOG}
    ).encode()


def commentguard_answer(answer: bytes) -> tuple[float, bool]:
    verdict = json.loads(answer)["verdict"]
    return float(verdict["score"]), verdict["decision"] in COMMENTGUARD_SPAM_DECISIONS


# --- Rspamd -------------------------------------------------------------------------------


def ensure_debian_packages(packages: dict[str, str]) -> None:
    """Install the Debian packages whose program (key) is missing, as `make browser` does."""
    missing = [package for program, package in packages.items() if shutil.which(program) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"needs {' '.join(missing)}: run as root, or apt-get install them")
    print(f"installing {' '.join(missing)} from Debian ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )


def rspamd_version() -> str:
    out = subprocess.run(["rspamd", "--version"], capture_output=True, text=True).stdout
    return out.strip().rsplit(" ", 1)[-1] if out.strip() else "?"


def write_rspamd_config(folder: Path, port: int, controller: int, redis_port: int) -> None:
    """local.d/override.d over Debian's stock config: loopback only, Bayes in our Redis."""
    local, override = folder / "local.d", folder / "override.d"
    for path in (local, override, folder / "db", folder / "run", folder / "log"):
        path.mkdir(parents=True, exist_ok=True)
    for module in RSPAMD_OFF:
        (local / f"{module}.conf").write_text("enabled = false;\n")
    # Anything left that asks DNS is refused at once, on this machine.
    dead = free_port()
    (local / "options.inc").write_text(
        f'dns {{ nameserver = ["127.0.0.1:{dead}"]; timeout = 0.2s; retransmits = 0; }}\n'
    )
    # Logged at warning, as commentguard runs here: no line per message.
    (override / "logging.inc").write_text(
        f'type = "file"; filename = "{folder}/log/rspamd.log"; level = "warning";\n'
    )
    cores = os.cpu_count() or 1
    (override / "worker-normal.inc").write_text(
        f'bind_socket = "127.0.0.1:{port}"; count = {cores}; mime = true;\n'
    )
    (override / "worker-controller.inc").write_text(
        f'bind_socket = "127.0.0.1:{controller}"; count = 1; secure_ip = "127.0.0.1";\n'
        'password = "bench";\n'
    )
    (override / "worker-proxy.inc").write_text(
        f'bind_socket = "127.0.0.1:{free_port()}"; count = 0;\n'
    )
    # 1,600 training comments are far from the stock 200 learns per class only when one class
    # is rare; 20 lets Bayes answer as soon as a class has been shown a few comments.
    # Comments are short: at the stock min_tokens (11), Bayes would neither learn nor score one
    # comment in seven.
    (local / "classifier-bayes.conf").write_text(
        f'backend = "redis"; servers = "127.0.0.1:{redis_port}"; min_learns = 20;\n'
        "min_tokens = 3; autolearn = false;\n"
    )


@contextlib.contextmanager
def running_rspamd(folder: Path) -> Iterator[tuple[int, int, list[int]]]:
    """Rspamd and its Redis from `folder`: (check port, controller port, root pids)."""
    port, controller, redis_port = free_port(), free_port(), free_port()
    write_rspamd_config(folder, port, controller, redis_port)
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder / "db")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    command = [
        "rspamd", "-f", "-c", "/etc/rspamd/rspamd.conf",
        "--var", f"LOCAL_CONFDIR={folder}", "--var", f"DBDIR={folder / 'db'}",
        "--var", f"RUNDIR={folder / 'run'}", "--var", f"LOGDIR={folder / 'log'}",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("-i")  # its workers run as root, in a scratch folder, on loopback
    rspamd = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=(folder / "log" / "stderr").open("wb")
    )
    try:
        wait_for(lambda: _pong(port), rspamd, "rspamd")
        yield port, controller, [rspamd.pid, redis.pid]
    finally:
        for process in (rspamd, redis):
            process.terminate()
        for process in (rspamd, redis):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def _pong(port: int) -> bool:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).text.strip() == "pong"


def wait_for(ready: Callable[[], bool], process: subprocess.Popen[bytes], name: str) -> None:
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode}")
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{name} did not become ready")


def wait_idle(pids: list[int], quiet_ms: float = 50, timeout: float = 120) -> None:
    """Wait until a filter's processes use almost no CPU (Rspamd compiles its Hyperscan
    databases in the background after it answers, and checks run slower until then)."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = cpu_seconds(pids)
        if (now - last) * 1000 < quiet_ms:
            return
        last = now


async def learn_rspamd(controller: int, examples: list[Any]) -> dict[str, Any]:
    """Teach Rspamd's Bayes every training comment; how many it learned and refused, and why."""
    counts: dict[str, Any] = {"learned": 0, "refused": 0, "why": {}}
    queue = list(enumerate(examples))

    async def worker() -> None:
        client = Client(controller, {"Password": "bench"})
        while queue:
            n, example = queue.pop()
            path = "/learnspam" if example.label == 1 else "/learnham"
            status, answer = await client.post(path, message(example, n))
            if status == 200:
                counts["learned"] += 1
                continue
            counts["refused"] += 1
            try:
                why = str(json.loads(answer).get("error", answer[:80]))
            except ValueError:
                why = answer[:80].decode(errors="replace")
            counts["why"][why] = counts["why"].get(why, 0) + 1
        client.close()

    await asyncio.gather(*(worker() for _ in range(4)))
    return counts


# --- commentguard -------------------------------------------------------------------------


def train_commentguard(examples: list[Any], models_dir: Path) -> float:
    from classifier.artifact import set_active
    from training.train import train

    result = train(examples, models_dir, seed=0)
    set_active(models_dir, result.version)
    return result.seconds


@contextlib.contextmanager
def running_commentguard(
    folder: Path, models_dir: Path, source: Path | None = None
) -> Iterator[tuple[int, str, int]]:
    """`commentguard serve --api-workers 2` on a fresh SQLite database: (port, key, pid).

    `source`: run the code of that folder (another revision) instead of this checkout's."""
    import httpx

    env = service_env(folder, models_dir, free_port(), None)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    cli = [sys.executable, "-m", "service.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, cwd=folder, check=True)
    created = subprocess.run(
        [*cli, "keys", "create", "--name", "peers"],
        env=env, cwd=folder, check=True, capture_output=True, text=True,
    )  # fmt: skip
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    log = (folder / "serve.log").open("wb")
    serve = subprocess.Popen(
        [*cli, "serve", "--port", str(port), "--api-workers", "2"],
        env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200,
            serve,  # type: ignore[arg-type]
            f"commentguard serve (see {folder / 'serve.log'})",
        )
        # The workers load the model after the API answers: not in the first phase's CPU.
        wait_idle([serve.pid])
        yield port, key, serve.pid
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            serve.kill()
        log.close()


# --- measuring ----------------------------------------------------------------------------


def processes(pids: list[int]) -> list[Any]:
    import psutil

    found = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            found += [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
    return found


def cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for process in processes(pids):
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


async def score_all(flt: Filter, examples: list[Any]) -> tuple[list[float], list[int]]:
    """Each test comment once (4 at a time): the filter's score and its own decision."""
    scores: list[float] = [0.0] * len(examples)
    flagged: list[int] = [0] * len(examples)
    queue = list(range(len(examples)))

    async def worker() -> None:
        client = Client(flt.port, flt.headers)
        while queue:
            i = queue.pop()
            status, answer = await client.post(flt.path, flt.encode(examples[i], i))
            if status != 200:
                raise SystemExit(f"{flt.name}: HTTP {status}: {answer[:200]!r}")
            scores[i], spam = flt.decode(answer)
            flagged[i] = int(spam)
        client.close()

    await asyncio.gather(*(worker() for _ in range(4)))
    return scores, flagged


async def load_phase(
    flt: Filter, examples: list[Any], concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """Closed loop at `concurrency` for `seconds` after `warmup`: latencies and CPU."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    cpu_before = cpu_seconds(flt.pids)
    started = time.perf_counter()
    measure_from = started + warmup
    end = measure_from + seconds

    async def loop(slot: int) -> None:
        nonlocal errors, sent
        client = Client(flt.port, flt.headers)
        n = slot * 997
        try:
            while (now := time.perf_counter()) < end:
                example = examples[n % len(examples)]
                status, _ = await client.post(flt.path, flt.encode(example, n))
                done = time.perf_counter()
                sent += 1
                if now >= measure_from:
                    if status == 200:
                        latencies.append(done - now)
                    else:
                        errors += 1
                n += 1
        finally:
            client.close()

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    cpu = cpu_seconds(flt.pids) - cpu_before
    return {
        "concurrency": concurrency,
        "seconds": seconds,
        "latencies": latencies,
        "errors": errors,
        "cpu_ms": cpu * 1000 / max(1, sent),
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    latencies = [x for row in rows for x in row["latencies"]]
    seconds = sum(row["seconds"] for row in rows)
    return {
        "per_s": len(latencies) / seconds,
        "p50": percentile(latencies, 0.5) * 1000,
        "p90": percentile(latencies, 0.9) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "errors": sum(row["errors"] for row in rows),
        "cpu_ms": sum(row["cpu_ms"] for row in rows) / len(rows),
        "rounds_per_s": [len(row["latencies"]) / row["seconds"] for row in rows],
    }


# --- the report ---------------------------------------------------------------------------


def report(args: argparse.Namespace, facts: dict[str, Any]) -> str:
    quality, speed = facts["quality"], facts["speed"]
    names = list(quality)
    refusals = "; ".join(f"{n}: {why}" for why, n in facts["rspamd_learns"]["why"].items())
    lines = [
        "## Beside Rspamd",
        "",
        f"`python bench/peers.py {' '.join(sys.argv[1:])}`".replace(" `", "`") + f" on "
        f"{time.strftime('%Y-%m-%d %H:%M')} UTC; {facts['machine']}.",
        "",
        f"Trained on the UCI YouTube comments of four videos ({facts['n_train']} comments), "
        f"tested on the fifth ({args.video}: {facts['n_test']} comments, {facts['n_test_spam']} "
        f"spam). Rspamd {facts['rspamd_version']} from Debian (stock rules with the modules that "
        "reach the network off; Bayes in a private Redis, "
        f"{facts['rspamd_learns']['learned']} comments learned, "
        f"{facts['rspamd_learns']['refused']} refused ({refusals}); `POST /checkv2`, spam at "
        "`add header` or "
        "above) against `commentguard serve --api-workers 2` (embedded Redis, SQLite, rate limits "
        f"on; `POST /v1/check`, spam at `spam` or `discard`; trained in "
        f"{facts['train_seconds']:.0f} s). Same client (asyncio, one connection per slot), "
        f"closed loop, {args.rounds} rounds of {args.seconds:.0f} s per filter and concurrency, "
        "alternating filters.",
        "",
        "| filter | ROC AUC | F1 | MCC | ham FPR |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        q = quality[name]
        lines.append(
            f"| {name} | {q['roc_auc']:.3f} | {q['f1']:.3f} | {q['mcc']:.3f} | {q['fpr']:.1%} |"
        )
    lines += [
        "",
        "| filter | concurrency | comments/s | p50 / p90 / p99 ms | CPU ms/comment | errors |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for c in CONCURRENCIES:
        for name in names:
            s = speed[name][c]
            rounds = ", ".join(f"{x:.0f}" for x in s["rounds_per_s"])
            lines.append(
                f"| {name} | {c} | {s['per_s']:.0f} ({rounds}) | {s['p50']:.1f} / "
                f"{s['p90']:.1f} / {s['p99']:.1f} | {s['cpu_ms']:.2f} | {s['errors']} |"
            )
    ours, peer = names[1], names[0]
    lines += ["", f"{ours} ÷ {peer}, and the targets of issue 19:", ""]
    for c in CONCURRENCIES:
        a, b = speed[ours][c], speed[peer][c]
        ratio = a["per_s"] / b["per_s"]
        if c == 1:
            verdict = "met" if a["p50"] <= b["p50"] else "**missed**"
            target = f"p50 ≤ {peer}'s: {verdict}"
        else:
            met = ratio >= 1.5 and a["p99"] <= b["p99"]
            target = f"≥ 1.5× and p99 ≤ {peer}'s: {'met' if met else '**missed**'}"
        lines.append(
            f"- concurrency {c}: comments/s ×{ratio:.2f}, p50 ×{a['p50'] / b['p50']:.2f}, "
            f"p99 ×{a['p99'] / b['p99']:.2f}, CPU per comment ×{a['cpu_ms'] / b['cpu_ms']:.2f} "
            f"({target})"
        )
    return "\n".join(lines) + "\n"


# --- the run ------------------------------------------------------------------------------


async def measure(args: argparse.Namespace, filters: list[Filter], test: list[Any]) -> dict:
    from training.metrics import flagged_metrics

    quality = {}
    for flt in filters:
        print(f"{flt.name}: scoring the {len(test)} test comments ...", flush=True)
        scores, flagged = await score_all(flt, test)
        quality[flt.name] = flagged_metrics([e.label for e in test], flagged, scores)
    speed: dict[str, dict[int, list[dict[str, Any]]]] = {f.name: {} for f in filters}
    for r in range(args.rounds):
        order = filters if r % 2 == 0 else filters[::-1]
        for c in CONCURRENCIES:
            for flt in order:
                row = await load_phase(flt, test, c, args.seconds, args.warmup)
                speed[flt.name].setdefault(c, []).append(row)
                done = summary([row])
                print(
                    f"round {r + 1} {flt.name} @{c}: {done['per_s']:.0f}/s p50 "
                    f"{done['p50']:.1f} p99 {done['p99']:.1f} ms cpu {done['cpu_ms']:.2f} ms",
                    flush=True,
                )
    return {
        "quality": quality,
        "speed": {name: {c: summary(rows) for c, rows in by.items()} for name, by in speed.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", default="Youtube05-Shakira", help="the held-out video")
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase, after warm-up")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print, don't edit the docs")
    args = parser.parse_args()
    args.seconds = min(args.seconds, 60.0)  # bounded: at most 36 phases of a minute
    args.rounds = max(1, min(args.rounds, 6))

    ensure_debian_packages({"rspamd": "rspamd", "redis-server": "redis-server"})
    from training.corpora import load_bundled

    examples = load_bundled(["youtube"])
    videos = sorted({e.group for e in examples})
    if args.video not in videos:
        raise SystemExit(f"--video: one of {', '.join(videos)}")
    train = [e for e in examples if e.group != args.video]
    test = [e for e in examples if e.group == args.video]
    facts: dict[str, Any] = {
        "machine": machine(),
        "n_train": len(train),
        "n_test": len(test),
        "n_test_spam": sum(e.label for e in test),
        "rspamd_version": rspamd_version(),
    }
    with tempfile.TemporaryDirectory(prefix="cg-peers-") as tmp:
        folder = Path(tmp)
        models_dir = folder / "models"
        print(f"training commentguard on {len(train)} comments ...", flush=True)
        facts["train_seconds"] = train_commentguard(train, models_dir)
        (folder / "cg").mkdir()
        (folder / "rspamd").mkdir()
        with (
            running_rspamd(folder / "rspamd") as (port, controller, rspamd_pids),
            running_commentguard(folder / "cg", models_dir) as (cg_port, key, cg_pid),
        ):
            print("teaching Rspamd's Bayes ...", flush=True)
            facts["rspamd_learns"] = asyncio.run(learn_rspamd(controller, train))
            print(f"Rspamd: {facts['rspamd_learns']}; waiting for it to settle ...", flush=True)
            wait_idle(rspamd_pids)
            filters = [
                Filter("Rspamd", port, "/checkv2", {}, message, rspamd_answer, rspamd_pids),
                Filter(
                    "commentguard",
                    cg_port,
                    "/v1/check",
                    {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                    check_body,
                    commentguard_answer,
                    [cg_pid],
                ),
            ]
            facts.update(asyncio.run(measure(args, filters, test)))
    text = report(args, facts)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
        print("written to docs/benchmarks.md")


if __name__ == "__main__":
    main()
