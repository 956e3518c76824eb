"""The README's commands, run as a reader would run them, against a fresh `commentguard serve`.

Every shell block of README.md (and each docs/*.md block marked `run`; tests/docs/markdown.py
says how a block is marked) runs in one bash session per file, in order, from the repository's
root, with `set -eo pipefail`: variables carry from block to block as in a reader's terminal,
and any command failing fails the test. The service is what `make run` starts (`commentguard
serve`: the API, an embedded Redis, the workers and beat) with the callback allowlist the README
tells the reader to set, in a folder of its own and with the test suite's small model.

A comment line `# => ANSWER` shows what the command above it answers: JSON shows a part of the
answer (every key shown must be there with that value; arrays: each shown item is in the
answer), anything else a text the output contains. An answer that is an error (`{"error": …}`)
that the README does not show fails the test.

Two addresses are changed before running, as on a shared machine they may be taken: the
README's `localhost:8000` becomes the test service's port and the callback receiver's
`127.0.0.1:9000` (the one the README allowlists) a free port of the test's own receiver.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from service.embedded import free_port
from service.settings import Settings
from tests.docs.markdown import README, ROOT, Block, blocks, runnable
from tests.service.conftest import CallbackReceiver, make_settings, wait_until

pytestmark = pytest.mark.xdist_group("readme")

SEGMENT_TIMEOUT_SECONDS = 120
README_PORT = "localhost:8000"
_ALLOWLIST = re.compile(r"COMMENTGUARD_CALLBACK_ALLOWED_HOSTS=(\S+) make run")
_ANSWER = re.compile(r"^\s*# => ?(.*)$")


@pytest.fixture(scope="module")
def settings(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The README's service: a folder of its own, SQLite, Redis embedded by `serve`."""
    folder = tmp_path_factory.mktemp("readme")
    allowed = _ALLOWLIST.search(README.read_text())
    assert allowed, "the README no longer says which callback hosts to allow"
    return make_settings(
        database_url=f"sqlite:///{folder / 'var' / 'commentguard.db'}",
        models_dir=models_dir,
        data_dir=folder / "var",
        callback_allowed_hosts=allowed.group(1).split(","),
        log_level="WARNING",
    )


def service_env(settings: Settings) -> dict[str, str]:
    from service.embedded import child_env

    return child_env(settings) | {"COMMENTGUARD_REDIS_URL": ""}


@dataclass
class Service:
    url: str
    port: int
    env: dict[str, str]


@pytest.fixture(scope="module")
def service(settings: Settings, receiver: CallbackReceiver) -> Iterator[Service]:
    """`commentguard serve`, as `make run` starts it (on a free port)."""
    port = free_port()
    env = service_env(settings)
    # The allowlist the README gives, with the port of the receiver that stands in for it.
    allowed = [localised(host, receiver.port, settings) for host in settings.callback_allowed_hosts]
    env["COMMENTGUARD_CALLBACK_ALLOWED_HOSTS"] = ",".join(allowed)
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "commentguard"), "serve", "--port", str(port),
         "--workers-concurrency", "1"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"commentguard serve exited with code {process.returncode}")
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 120, "commentguard serve")
        yield Service(url, port, env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- running blocks --------------------------------------------------------------------------


@dataclass
class Segment:
    """Commands of a block up to a shown answer (or the block's end), and that answer."""

    block: Block
    line: int
    script: str
    answer: str | None


def segments(block: Block) -> list[Segment]:
    found: list[Segment] = []
    lines: list[str] = []
    answer: list[str] = []
    start = block.line + 1
    for number, line in enumerate(block.text.splitlines(), start=block.line + 1):
        shown = _ANSWER.match(line)
        if shown:
            answer.append(shown.group(1))
            continue
        if answer:
            found.append(Segment(block, start, "\n".join(lines), "\n".join(answer)))
            lines, answer, start = [], [], number
        lines.append(line)
    if lines or answer:
        found.append(Segment(block, start, "\n".join(lines), "\n".join(answer) or None))
    return found


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


class Shell:
    """One bash session, fed a script at a time; its output read up to a marker per script."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.folder = folder
        self.errors = folder / "stderr"
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors.open("w"),
            cwd=ROOT,
            env=env,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=_pump, args=(self.process.stdout, self.lines), daemon=True).start()
        self.count = 0
        self._send("set -eo pipefail")

    def _send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def run(self, script: str, where: str) -> str:
        """Run `script` in the session (its stdin: nothing); its output, or fail saying why."""
        self.count += 1
        path = self.folder / f"segment-{self.count}.sh"
        path.write_text(script + "\n")
        marker = f"__segment_done_{uuid.uuid4().hex}__"
        self._send(f"source {path} </dev/null\nprintf '\\n%s\\n' {marker}")
        output: list[str] = []
        deadline = time.monotonic() + SEGMENT_TIMEOUT_SECONDS
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{where}: no answer within {SEGMENT_TIMEOUT_SECONDS}s:\n{script}")
            if line is None:
                self.process.wait(timeout=10)
                pytest.fail(
                    f"{where}: exited with code {self.process.returncode}:\n{script}\n"
                    f"output:\n{chr(10).join(output)}\nstderr:\n{self.errors.read_text()[-3000:]}"
                )
            if line == marker:
                return "\n".join(output).strip("\n")
            output.append(line)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)  # the session and anything it left running
            self.process.wait(timeout=10)


def contains(actual: Any, shown: Any) -> bool:
    """Whether `actual` has everything `shown` shows (a part of an object, items of a list)."""
    if isinstance(shown, dict):
        return isinstance(actual, dict) and all(
            key in actual and contains(actual[key], value) for key, value in shown.items()
        )
    if isinstance(shown, list):
        return isinstance(actual, list) and all(
            any(contains(item, want) for item in actual) for want in shown
        )
    return bool(actual == shown)


def _json_lines(output: str) -> list[Any]:
    found = []
    for line in output.splitlines():
        if line.lstrip().startswith(("{", "[")):
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    with contextlib.suppress(ValueError):
        found.append(json.loads(output))  # pretty-printed JSON
    return found


def check_answer(segment: Segment, output: str) -> None:
    where = f"{segment.block.path.name}:{segment.line}"
    shown: Any = None
    if segment.answer is not None:
        try:
            shown = json.loads(segment.answer)
        except ValueError:
            assert segment.answer in output, (
                f"{where}: the README shows {segment.answer!r}; the command printed:\n{output}"
            )
    answers = _json_lines(output)
    if shown is not None:
        assert any(contains(answer, shown) for answer in answers), (
            f"{where}: the README shows {segment.answer}; the command printed:\n{output}"
        )
    shows_error = isinstance(shown, dict) and "error" in shown
    for answer in answers:
        if isinstance(answer, dict) and "error" in answer and not shows_error:
            pytest.fail(f"{where}: an error the README does not show:\n{output}")


def localised(
    script: str, receiver_port: int, settings: Settings, service: Service | None = None
) -> str:
    """`script` with the README's service and receiver addresses replaced by the test's."""
    if service is not None:
        script = script.replace(README_PORT, f"localhost:{service.port}")
    return script.replace(settings.callback_allowed_hosts[0], f"127.0.0.1:{receiver_port}")


def test_readme_keeps_two_setup_commands() -> None:
    setup = [b for b in blocks(README) if b.is_shell and "setup" in b.words]
    assert len(setup) == 1, "README.md has one `sh setup` block: the fresh machine's commands"
    commands = [line.split("#")[0].strip() for line in setup[0].text.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]


def test_run_every_readme_command_as_written(
    service: Service,
    settings: Settings,
    receiver: CallbackReceiver,
    tmp_path: Path,
) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed: run `make clients` (as root) or `make test`")
    chosen = runnable()
    assert any(b.path == README for b in chosen)
    sessions: dict[Path, Shell] = {}
    try:
        for block in chosen:
            if block.path not in sessions:
                folder = tmp_path / block.path.stem
                folder.mkdir()
                sessions[block.path] = Shell(service.env, folder)
            for segment in segments(block):
                script = localised(segment.script, receiver.port, settings, service)
                output = sessions[block.path].run(script, f"{block.where} (line {segment.line})")
                check_answer(segment, output)
    finally:
        for shell in sessions.values():
            shell.close()
    # The README's webhook comment: its verdict reaches the receiver it names, signed.
    receiver.wait(
        lambda: any(r.body.get("external_id") == "c-1" for r in receiver.received),
        60,
        "the callback of the README's comment c-1",
    )
    assert all(r.signature_ok for r in receiver.received)


# --- the checks themselves --------------------------------------------------------------------


def _block(text: str) -> Block:
    return Block(README, 10, "sh", (), text)


def test_split_a_block_at_each_shown_answer() -> None:
    found = segments(_block('A=1\necho "$A"\n# => 1\necho two\necho three\n# => {"a": 1}\ntrue\n'))
    assert [(s.line, s.script, s.answer) for s in found] == [
        (11, 'A=1\necho "$A"', "1"),
        (14, "echo two\necho three", '{"a": 1}'),
        (17, "true", None),
    ]


def test_fail_on_an_answer_the_readme_does_not_show() -> None:
    segment = Segment(
        _block(""), 11, "curl …", '{"status": "scored", "verdict": {"decision": "ham"}}'
    )
    check_answer(segment, '{"status": "scored", "verdict": {"decision": "ham", "score": 0.1}}')
    with pytest.raises(AssertionError, match="the README shows"):
        check_answer(segment, '{"status": "scored", "verdict": {"decision": "spam"}}')
    with pytest.raises(AssertionError, match="the README shows"):
        check_answer(Segment(_block(""), 11, "echo", "hello"), "goodbye")


def test_fail_on_an_error_answer_the_readme_does_not_show() -> None:
    refused = '{"error": {"code": "invalid_callback_url", "message": "does not resolve"}}'
    with pytest.raises(pytest.fail.Exception, match="an error the README does not show"):
        check_answer(Segment(_block(""), 11, "curl …", None), refused)
    check_answer(
        Segment(_block(""), 11, "curl …", '{"error": {"code": "invalid_callback_url"}}'), refused
    )


def test_match_shown_list_items_anywhere_in_the_answer() -> None:
    assert contains([{"a": 1, "b": 2}, {"a": 3}], [{"a": 3}])
    assert not contains([{"a": 1}], [{"a": 3}])
    assert not contains({"a": [1]}, {"a": [1], "b": None})


def test_run_blocks_in_one_session_and_fail_on_a_failing_command(tmp_path: Path) -> None:
    shell = Shell(dict(os.environ), tmp_path)
    try:
        assert shell.run("X=kept", "here") == ""
        assert shell.run('echo "$X"', "here") == "kept"
        # pipefail: a failing command in a pipeline fails the block, as `curl … | python3` would
        with pytest.raises(pytest.fail.Exception, match="exited with code 1"):
            shell.run("false | true\necho never", "here")
    finally:
        shell.close()
