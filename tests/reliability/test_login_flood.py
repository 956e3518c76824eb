"""A flood of console logins with random user names does not slow the API's checks.

The API runs as `commentguard serve` (a process of its own), the flood comes from another
process (8 threads, each from an address of its own on the loopback network, so that the limit
per address lets some of every thread's attempts through to the name lookup), and the test
process measures `POST /v1/check` in short turns, idle and flooded by turns (the flood process
told to go and to pause), pooled over the turns: a machine busy with other work slows both
alike.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from service.settings import Settings
from tests.reliability.conftest import ApiProcess
from tests.service.conftest import create_account

pytestmark = [pytest.mark.xdist_group("reliability_login_flood"), pytest.mark.slow]

ROUNDS = 8
CHECKS_PER_PHASE = 50
PHASE_SECONDS = 2.5  # and at least this long, so that each flood thread tries in each turn
FLOOD_THREADS = 8

# The flood, run with `python -c`: argv[1] the API's URL, argv[2] a file to write counts to,
# argv[3] threads; floods between the lines "go" and "pause" on its stdin, until it closes.
FLOOD = """
import json, random, re, sys, threading, time
import httpx

url, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
running, stop = threading.Event(), threading.Event()
counts = {}
lock = threading.Lock()

def flood(n):
    rng = random.Random(n)
    transport = httpx.HTTPTransport(local_address=f"127.0.1.{n + 1}")
    with httpx.Client(base_url=url, timeout=30, transport=transport) as client:
        page = client.get("/console/login").text
        while not stop.is_set():
            if not running.is_set():
                running.wait()
                time.sleep(rng.uniform(0, 1))  # a steady flood, not all at once on "go"
            name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(12))
            # Each answer's form carries a new token (and its cookie): a browser's next try.
            data = {"username": name, "password": "guess", "csrf_token": TOKEN.search(page)[1]}
            answer = client.post("/console/login", data=data)
            page = answer.text
            with lock:
                counts[answer.status_code] = counts.get(answer.status_code, 0) + 1

workers = [threading.Thread(target=flood, args=(n,), daemon=True) for n in range(threads)]
for t in workers:
    t.start()
print("ready", flush=True)
for line in sys.stdin:  # "go", "pause"; the end of input stops
    if line.strip() == "go":
        running.set()
    else:
        running.clear()
stop.set()
running.set()
for t in workers:
    t.join(30)
with open(out, "w") as f:
    json.dump(counts, f)
"""


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[ApiProcess]:
    server = ApiProcess(settings)
    try:
        server.start()
        yield server
    finally:
        server.close()


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _checks(client: httpx.Client, n: int, seconds: float = 0.0) -> list[float]:
    took: list[float] = []
    until = time.monotonic() + seconds
    while len(took) < n or time.monotonic() < until:
        i = len(took)
        body = {"content": f"a lovely song, number {i}", "blog": "https://flood.example"}
        started = time.perf_counter()
        response = client.post("/v1/check", json=body)
        took.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return took


def test_a_login_flood_of_random_names_leaves_check_latency_within_twice_idle(
    api: ApiProcess, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    account = create_account(settings, "flood")
    idle: list[float] = []
    flooded: list[float] = []
    with httpx.Client(base_url=api.url, timeout=30) as console:
        # A process measures a password check once, on its first unknown name: done here.
        page = console.get("/console/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None
        data = {"username": "warm-up", "password": "x", "csrf_token": token[1]}
        assert console.post("/console/login", data=data).status_code == 401
    out = tmp_path_factory.mktemp("flood") / "counts.json"
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, api.url, str(out), str(FLOOD_THREADS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert flood.stdin is not None and flood.stdout is not None

    def tell(line: str) -> None:
        assert flood.stdin is not None
        flood.stdin.write(line + "\n")
        flood.stdin.flush()

    try:
        assert flood.stdout.readline() == "ready\n"
        with httpx.Client(base_url=api.url, headers=account.headers, timeout=30) as client:
            _checks(client, 30)  # warm: the site, the key cache, the connection
            for _ in range(ROUNDS):
                idle += _checks(client, CHECKS_PER_PHASE, PHASE_SECONDS)
                tell("go")
                flooded += _checks(client, CHECKS_PER_PHASE, PHASE_SECONDS)
                tell("pause")
    finally:
        flood.stdin.close()
        flood.wait(60)
    attempts = json.loads(out.read_text())
    idle_p99, flooded_p99 = _p99(idle), _p99(flooded)
    print(
        f"login flood: /v1/check p99 idle {idle_p99 * 1000:.1f} ms, flooded "
        f"{flooded_p99 * 1000:.1f} ms ({len(idle)} and {len(flooded)} checks); logins answered "
        f"{attempts}"
    )
    # The flood was one: every thread tried in every turn (an unknown name waits as long as a
    # password check takes, so each connection tries about once a check's time), refused as
    # a wrong name (401) or past the limit per address (429).
    assert sum(attempts.values()) >= FLOOD_THREADS * ROUNDS, attempts
    assert set(attempts) <= {"401", "429"}, attempts
    assert attempts.get("401", 0) >= FLOOD_THREADS, "some names were looked up, none hashed"
    assert flooded_p99 <= 2 * idle_p99, (idle_p99, flooded_p99)
