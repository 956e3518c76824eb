"""A replay: play a labelled corpus through a running service and act as the site's moderators.

Comments go in, in date order and a few at a time (`batch`: comments arriving together, sent
in parallel) through the webhook path (intake, queue, worker). Comments with the same timestamp
come in an order drawn from the seed; an undated comment follows the dated one before it in its
file, so a corpus without dates (Instagram, SMS) is played in file order. For each comment the replay
reads the verdict the comment got on arrival, then `Moderators` behave as the site's people
would (the one moderator policy of every replay):

- a comment the service put in the moderation queue (`unsure` or `spam`) is reviewed, and the
  moderator labels it with its true label;
- a spam that was published (`ham`) is reported as missed with probability `missed_report_rate`
  (seeded), through the platform's feedback path (Akismet `submit-spam`);
- a `discard` is never seen by anyone.

Labels reach the service's learning loop as they would from a real site. After a batch's labels
the replay waits until no retrain is queued or running, and until the API serves the active
model, before the next batch, so that the same seed gives the same figures.

By default the replay starts a whole service of its own (`embedded_service`) whose models never
learn from the replayed corpus: its first model and every retrained one train on the other
default corpora only. This is an evaluation tool, not part of the service (it needs the `bench`
extra for its plots):

    .venv/bin/python bench/replay_service.py data/corpora/youtube-spam-collection/*.csv \
        --site https://youtube.example --out var/replay/youtube --seed 0 [--limit 400]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from training.corpora import Example, read_file  # noqa: E402
from training.metrics import flagged_metrics  # noqa: E402

FLAGGED = frozenset({"spam", "discard"})
REVIEWED = frozenset({"unsure", "spam"})


class ReplayError(RuntimeError):
    """The service did not behave as the replay needs (an error answer, or a timeout)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One comment of the replayed corpus, in the order it is played."""

    number: int
    id: str
    label: int  # 1 spam, 0 ham
    fields: dict[str, Any]


@dataclass(slots=True)
class Outcome:
    """What happened to one comment."""

    number: int
    id: str
    label: int
    decision: str
    score: float
    model_version: str
    reviewed: bool
    reported: bool


@dataclass
class Moderators:
    """The site's people, as every replay plays them: they review what the service queued,
    with its true label, report a published spam as missed with probability
    `missed_report_rate` (drawn from `seed`), and never see a discarded comment."""

    seed: int = 0
    missed_report_rate: float = 0.5
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def act(self, decision: str, label: int) -> tuple[bool, bool]:
        """(reviewed, reported missed) for a comment given `decision` whose truth is `label`."""
        reviewed = decision in REVIEWED
        # Drawn for every comment, so that one change of decision does not shift the others.
        draw = self._rng.random()
        reported = decision == "ham" and label == 1 and draw < self.missed_report_rate
        return reviewed, reported


@dataclass
class ReplayReport:
    overall: dict[str, Any]
    after_warmup: dict[str, Any]
    reviewed_share: float
    reported_missed: int
    retrains: list[dict[str, Any]]
    model_versions: list[dict[str, Any]]
    learning_curve: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_rows(paths: Sequence[Path], seed: int = 0) -> list[Row]:
    """The files' comments in date order.

    Comments of the same timestamp come in an order drawn from `seed`; an undated comment
    stays right after the comment before it in its file (an undated file keeps its order).
    """
    rng = random.Random(seed)
    # Runs: a dated comment and the undated ones after it, ordered as a unit.
    runs: list[tuple[datetime, float, int, list[Example]]] = []
    for path in paths:
        current: list[Example] | None = None
        for example in read_file(path):
            when = example.comment.created_at
            if when is None and current is not None:
                current.append(example)
                continue
            if when is None:
                key = datetime.min.replace(tzinfo=UTC)
            else:
                key = when if when.tzinfo else when.replace(tzinfo=UTC)
            current = [example]
            runs.append((key, rng.random(), len(runs), current))
    runs.sort(key=lambda run: run[:3])
    ordered = [example for run in runs for example in run[3]]
    return [
        Row(number, example.id or f"row{number}", example.label, _fields(example))
        for number, example in enumerate(ordered)
    ]


def _fields(example: Example) -> dict[str, Any]:
    comment = example.comment
    fields: dict[str, Any] = {
        "content": comment.content,
        "author": comment.author,
        "author_email": comment.author_email,
        "author_url": comment.author_url,
        "user_ip": comment.user_ip,
        "user_agent": comment.user_agent,
        "referrer": comment.referrer,
        "permalink": comment.permalink,
        "comment_type": comment.comment_type,
    }
    if comment.created_at is not None:
        fields["created_at"] = comment.created_at.isoformat()
    return {name: value for name, value in fields.items() if value not in ("", None)}


# --- talking to the service --------------------------------------------------------------


@dataclass
class ServiceClient:
    """The three kinds of caller a replay plays: the platform, its moderators, its feedback."""

    base_url: str
    api_key: str
    moderator_token: str
    timeout: float = 120.0
    # Waits until what the site's labels teach is in force (None: the replay cannot see it).
    learned: Callable[[], bool] | None = None
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=30.0)

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; when the service's rate limits refuse it (429, or an Akismet answer
        with its alert headers), wait as long as Retry-After says and send it again, within
        the client's timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            response = self.http.request(method, path, **kwargs)
            limited = response.status_code == 429 or (
                "x-akismet-alert-code" in response.headers and "retry-after" in response.headers
            )
            if not limited or time.monotonic() > deadline:
                return response
            time.sleep(float(response.headers.get("retry-after", "1")))  # as the service asks

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise ReplayError(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {response.text[:500]}"
            )
        return response

    def submit(self, row: Row, site: str) -> str:
        body = {**row.fields, "external_id": row.id, "blog": site}
        response = self._send(
            "POST", "/v1/comments", json=body, headers={"Authorization": f"Bearer {self.api_key}"}
        )
        return str(self._check(response).json()["id"])

    def verdict(self, comment_id: str) -> dict[str, Any]:
        """The comment's verdict, waiting (bounded) for the worker to score it."""
        deadline = time.monotonic() + self.timeout
        pause = 0.002
        while True:
            response = self._send(
                "GET",
                f"/v1/comments/{comment_id}",
                headers={"Authorization": f"Bearer {self.api_key}"},
            )
            verdict = self._check(response).json().get("verdict")
            if verdict is not None:
                return dict(verdict)
            if time.monotonic() > deadline:
                raise ReplayError(f"comment {comment_id} not scored after {self.timeout:.0f}s")
            time.sleep(pause)  # polling the service for the worker's answer, with a bound
            pause = min(pause * 2, 0.05)

    def label(self, comment_id: str, label: str) -> dict[str, Any]:
        response = self._send(
            "POST",
            f"/v1/comments/{comment_id}/label",
            json={"label": label, "note": "replay"},
            headers={"Authorization": f"Bearer {self.moderator_token}"},
        )
        return dict(self._check(response).json())

    def report_missed(self, comment_id: str, row: Row, site: str) -> None:
        form = {
            "api_key": self.api_key,
            "blog": site,
            "guid": comment_id,
            "comment_content": row.fields.get("content", ""),
            "comment_author": row.fields.get("author", ""),
            "user_ip": row.fields.get("user_ip", "127.0.0.1"),
        }
        response = self._send("POST", "/1.1/submit-spam", data=form)
        self._check(response)

    def settle(self) -> list[dict[str, Any]]:
        """Wait (bounded) until no retrain is queued or running, then until the API serves the
        active model; the runs that ended meanwhile."""
        deadline = time.monotonic() + self.timeout * 10
        headers = {"Authorization": f"Bearer {self.moderator_token}"}
        waited: dict[str, dict[str, Any]] = {}
        while True:
            runs = self._check(self._send("GET", "/v1/models/runs", headers=headers)).json()
            busy = [run for run in runs if run.get("status") in ("queued", "running")]
            for run in busy:
                waited[str(run["run_id"])] = run
            if not busy:
                break
            if time.monotonic() > deadline:
                raise ReplayError(f"retrain runs {[r['run_id'] for r in busy]} did not finish")
            time.sleep(0.2)  # polling a training run that takes seconds, with a bound
        if not waited:
            return []
        ended = [run for run in runs if str(run.get("run_id")) in waited]
        models = self._check(self._send("GET", "/v1/models", headers=headers)).json()
        active = models.get("active")
        while self.served_version() != active:
            if time.monotonic() > deadline:
                raise ReplayError(f"model {active} not served after its promotion")
            time.sleep(0.05)  # polling the API's reload, with a bound
        return ended

    def served_version(self) -> str | None:
        response = self._check(self._send("GET", "/readyz"))
        version = response.json().get("model_version")
        return str(version) if version else None


# --- the replay --------------------------------------------------------------------------


def replay(
    rows: Sequence[Row],
    client: ServiceClient,
    site: str,
    seed: int = 0,
    warmup: int = 300,
    window: int = 200,
    missed_report_rate: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 10,
    deadline: float | None = None,
) -> tuple[ReplayReport, list[Outcome]]:
    """Play `rows` through the service, `batch` comments at a time; the report and each
    comment's outcome. No batch starts after `deadline` (a `time.time()`): the report then
    covers the comments played."""
    moderators = Moderators(seed, missed_report_rate)
    outcomes: list[Outcome] = []
    retrains: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    late_learning = 0
    stopped_by: str | None = None
    senders = ThreadPoolExecutor(batch)
    for start in range(0, len(rows), batch):
        if deadline is not None and time.time() > deadline:
            break
        # A batch arrives together; its moderators act once all of it is scored, in order.
        chunk = rows[start : start + batch]
        # Sent and awaited in parallel, as a site's traffic arrives; a comment's verdict does
        # not depend on the others of its batch (labels come after it).
        try:
            ids = list(senders.map(lambda row: client.submit(row, site), chunk))
            verdicts = list(senders.map(client.verdict, ids))
        except httpx.TransportError as exc:
            # The service went away: the report covers the batches played before, and says so.
            stopped_by = f"{type(exc).__name__}: {exc}"
            print(f"the service stopped answering ({stopped_by}); reporting what was played",
                  file=sys.stderr, flush=True)  # fmt: skip
            break
        acted = False
        for row, comment_id, verdict in zip(chunk, ids, verdicts, strict=True):
            decision = str(verdict["decision"])
            version = str(verdict["model_version"])
            if not versions or versions[-1]["version"] != version:
                versions.append({"version": version, "first_comment": row.number})
            reviewed, reported = moderators.act(decision, row.label)
            if reviewed:
                client.label(comment_id, "spam" if row.label else "ham")
            elif reported:
                client.report_missed(comment_id, row, site)
            acted = acted or reviewed or reported
            outcomes.append(
                Outcome(
                    row.number,
                    row.id,
                    row.label,
                    decision,
                    float(verdict["score"]),
                    version,
                    reviewed,
                    reported,
                )
            )
        if acted:
            # A label may have queued a retrain: let it finish first, so that the same seed
            # gives the same figures whatever the machine's speed.
            for run in client.settle():
                retrains.append({"after_comment": chunk[-1].number, **_run_summary(run)})
            if client.learned is not None and not client.learned():
                late_learning += 1
        if progress is not None:
            progress(chunk[-1].number + 1, len(rows))
    senders.shutdown()
    report = summarise(outcomes, retrains, versions, warmup, window)
    report.settings = {
        "seed": seed,
        "warmup": warmup,
        "window": window,
        "missed_report_rate": missed_report_rate,
        "batch": batch,
        "comments": len(outcomes),
        "stopped_early": len(outcomes) < len(rows),
        "late_learning": late_learning,
        "stopped_by": stopped_by,
    }
    return report, outcomes


def _run_summary(run: dict[str, Any]) -> dict[str, Any]:
    gate = run.get("gate") or {}
    return {
        "run_id": run.get("run_id"),
        "status": run.get("status"),
        "trigger": run.get("trigger"),
        "version": run.get("version"),
        "promoted": bool(run.get("promoted")),
        "activated": bool(run.get("activated")),
        "gate_reasons": gate.get("reasons", []),
        "seconds": run.get("seconds"),
    }


def _metrics(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    if not outcomes:  # a replay shorter than its warm-up
        return {
            "n": 0,
            "spam": 0,
            "precision": 0.0,
            "recall": 0.0,
            "f1": 0.0,
            "mcc": 0.0,
            "fpr": 0.0,
            "roc_auc": None,
            "reviewed_share": 0.0,
        }
    labels = [o.label for o in outcomes]
    flagged = [int(o.decision in FLAGGED) for o in outcomes]
    scores = [o.score for o in outcomes]
    metrics = flagged_metrics(labels, flagged, scores)
    metrics["reviewed_share"] = (
        sum(o.reviewed for o in outcomes) / len(outcomes) if outcomes else 0.0
    )
    return metrics


def summarise(
    outcomes: Sequence[Outcome],
    retrains: list[dict[str, Any]],
    versions: list[dict[str, Any]],
    warmup: int,
    window: int,
) -> ReplayReport:
    curve = []
    for start in range(0, len(outcomes), window):
        chunk = outcomes[start : start + window]
        curve.append({"start": start, "end": start + len(chunk), **_metrics(chunk)})
    return ReplayReport(
        overall=_metrics(outcomes),
        after_warmup=_metrics(outcomes[warmup:]),
        reviewed_share=sum(o.reviewed for o in outcomes) / max(1, len(outcomes)),
        reported_missed=sum(o.reported for o in outcomes),
        retrains=retrains,
        model_versions=versions,
        learning_curve=curve,
    )


def write_outputs(report: ReplayReport, outcomes: Sequence[Outcome], out: Path, title: str) -> None:
    """DIR/replay.json, DIR/outcomes.jsonl and DIR/learning_curve.png."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    with (out / "outcomes.jsonl").open("w") as handle:
        for outcome in outcomes:
            handle.write(json.dumps(asdict(outcome)) + "\n")
    plot_learning_curve(report, out / "learning_curve.png", title)


def plot_learning_curve(report: ReplayReport, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = report.learning_curve
    ends = [point["end"] for point in curve]
    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=100)
    axis.plot(ends, [p["f1"] for p in curve], marker="o", label="F1 (flagged = spam or discard)")
    axis.plot(ends, [p["fpr"] for p in curve], marker="o", label="ham false-positive rate")
    axis.plot(ends, [p["reviewed_share"] for p in curve], marker="o", label="share reviewed")
    for retrain in report.retrains:
        if retrain.get("activated"):
            axis.axvline(retrain["after_comment"], color="grey", linestyle=":", linewidth=1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("comments replayed (end of window); dotted: a retrained model promoted")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


# --- an embedded service to replay against -------------------------------------------------


def corpora_without(paths: Sequence[Path]) -> list[str]:
    """The default training corpora, less any bundled corpus a replayed file belongs to."""
    from training.corpora import corpus_files
    from training.train import DEFAULT_CORPORA

    replayed = {path.resolve() for path in paths}
    return [
        name
        for name in DEFAULT_CORPORA
        if not replayed & {file.resolve() for file in corpus_files(name)}
    ]


def train_first_model(corpora: Sequence[str], models: Path) -> str:
    """Train the replay's first model on `corpora` into `models` and activate it, unless a model
    is active there already (a cache shared by the replays of one corpus); its version.

    Trained as serve's first run trains the default model: the gate's validation split is left
    out, so that the gate can judge retrained models on comments none of them has seen.
    """
    from classifier.artifact import active_version
    from classifier.registry import activate
    from training.corpora import GATE_VALIDATION_SHARE, load_bundled, split_corpus
    from training.train import bundled_data_record, train

    models.mkdir(parents=True, exist_ok=True)
    # Replays of one corpus started together train it once: the others wait for it here.
    with (models / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        version = active_version(models)
        if version is not None:
            return version
        examples, _ = split_corpus(load_bundled(corpora), GATE_VALIDATION_SHARE)
        result = train(examples, models, data=bundled_data_record(corpora))
        activate(models, result.version, reason="the replay's first model")
        return result.version


@contextlib.contextmanager
def embedded_service(
    workdir: Path,
    corpora: Sequence[str],
    retrain_every: int | None,
    timeout: float = 120.0,
    first_model: Path | None = None,
) -> Iterator[ServiceClient]:
    """A whole service of its own (Redis, worker, beat, API, SQLite) in `workdir`, fresh.

    Its first model is trained on `corpora` only (or copied from `first_model`, a folder
    `train_first_model` filled), and so is every retrained one.
    """
    from service import db
    from service.embedded import child_env, embedded_stack, free_port, wait_for
    from service.settings import Settings

    shutil.rmtree(workdir, ignore_errors=True)
    models = workdir / "models"
    if first_model is not None:
        train_first_model(corpora, first_model)
        shutil.copytree(first_model, models, ignore=shutil.ignore_patterns(".lock"))
    else:
        train_first_model(corpora, models)
    overrides: dict[str, Any] = {
        "database_url": f"sqlite:///{workdir / 'replay.db'}",
        "models_dir": models,
        "data_dir": workdir / "var",
        "model_reload_check_seconds": 0.0,
        "retrain_corpora": list(corpora),
        # One client plays a whole site's traffic, its moderators and its feedback from one
        # address: the service's limits per key and per IP would throttle the replay itself.
        "rate_limit_per_key": 0,
        "rate_limit_per_ip": 0,
        # Scoring meets what the site's labels taught as soon as it is stored (see _learned).
        "site_cache_seconds": 0.0,
    }
    if retrain_every is not None:
        overrides["retrain_label_count"] = retrain_every
    settings = Settings(_env_file=None, **overrides)
    db.upgrade(settings)
    api_key, token = _credentials(settings)
    engine = db.make_engine(settings)
    with embedded_stack(settings, concurrency=1) as (ready, supervisor):
        port = free_port()
        cli = [sys.executable, "-m", "service.cli"]
        supervisor.start("api", [*cli, "serve", "--port", str(port)], child_env(ready))
        base_url = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200,
            timeout,
            "the replay's API",
        )
        client = ServiceClient(base_url, api_key, token, timeout, partial(_learned, engine))
        try:
            yield client
        finally:
            client.close()
            engine.dispose()


def _learned(engine: Any, timeout: float = 60.0) -> bool:
    """Wait (bounded) until the site's adapter was fitted on its newest label; False if it
    was not in time. Read from the embedded service's database, as no API shows it.

    A site's labels are learned by a task queued on each label, and scoring reads the result
    (`site_cache_seconds` is 0 here): waiting for it after each batch's labels makes the
    next batch meet it, whatever the machine's speed. A service without per-site adapters
    (no `site_adapters` table) has nothing to wait for.
    """
    from sqlalchemy import inspect, text

    if not inspect(engine).has_table("site_adapters"):
        return True
    newest = text(
        "SELECT max(labels.id) FROM labels JOIN comments ON comments.id = labels.comment_id"
        " WHERE NOT comments.is_test"
    )
    fitted = text("SELECT labels_seen FROM site_adapters")
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as connection:
            label = connection.execute(newest).scalar()
            seen = {str(row).rpartition(":")[2] for row in connection.execute(fitted).scalars()}
        if label is None or str(label) in seen:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling a task that takes well under a second, with a bound


def _credentials(settings: Any) -> tuple[str, str]:
    """A new account's API key and an admin's token, written straight into the database."""
    from service import db, tables
    from service.security import create_account_with_key
    from service.users import create_user

    engine = db.make_engine(settings)
    try:
        with db.make_session_factory(engine)() as session:
            key = create_account_with_key(session, "replay", settings.secret_key)
            token = create_user(session, "replay", tables.UserRole.ADMIN, settings.secret_key)
            session.commit()
    finally:
        engine.dispose()
    return key.plaintext, token.plaintext


# --- the command -----------------------------------------------------------------------------


def _raise_on_sigterm() -> None:
    def handler(signum: int, _frame: object) -> None:
        # An exception unwinds through every `finally`, so an embedded service's children are
        # stopped too.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="Labelled corpus files (CSV, JSONL).")
    parser.add_argument("--site", required=True, help="The site (blog URL) comments go to.")
    parser.add_argument("--out", type=Path, required=True, help="Folder for the outputs.")
    parser.add_argument("--url", help="A running service (default: an embedded one in OUT).")
    parser.add_argument("--api-key", help="The site's API key (with --url).")
    parser.add_argument("--moderator-token", help="A moderator's token for the site (with --url).")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seeds the moderators and the order of equal timestamps.",
    )
    parser.add_argument(
        "--retrain-every",
        type=int,
        help="Retrain after this many new labels "
        "(embedded service only; default: the service's setting).",
    )
    parser.add_argument(
        "--warmup", type=int, default=300, help="Comments left out of after_warmup."
    )
    parser.add_argument("--window", type=int, default=200, help="Comments per curve point.")
    parser.add_argument("--batch", type=int, default=10, help="Comments arriving together.")
    parser.add_argument("--limit", type=int, help="Play only the first LIMIT comments.")
    parser.add_argument(
        "--until", type=float, help="Start no batch after this time (seconds since the epoch)."
    )
    parser.add_argument(
        "--first-model", type=Path, help="A folder caching the embedded service's first model."
    )
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    _raise_on_sigterm()
    rows = load_rows(args.files, seed=args.seed)[: args.limit]
    service: contextlib.AbstractContextManager[ServiceClient]
    corpora: list[str] | None = None
    if args.url is not None:
        if not (args.api_key and args.moderator_token):
            parser.error("--url needs --api-key and --moderator-token")
        service = contextlib.closing(ServiceClient(args.url, args.api_key, args.moderator_token))
        print(f"replaying {len(rows)} comments against {args.url}", file=sys.stderr)
    else:
        corpora = corpora_without(args.files)
        print(
            f"replaying {len(rows)} comments; the embedded service's base model and its "
            f"retrains learn from {', '.join(corpora)} only",
            file=sys.stderr,
            flush=True,
        )
        service = embedded_service(
            args.out / "service", corpora, args.retrain_every, first_model=args.first_model
        )
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        if done % 500 < args.batch or done == total:
            print(
                f"  {done}/{total} ({time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True
            )

    with service as client:
        result, outcomes = replay(
            rows,
            client,
            args.site,
            seed=args.seed,
            warmup=args.warmup,
            window=args.window,
            progress=progress,
            batch=args.batch,
            deadline=args.until,
        )
    result.settings["base_corpora"] = corpora
    result.settings["files"] = [str(path) for path in args.files]
    result.settings["seconds"] = round(time.monotonic() - started, 1)
    names = ", ".join(path.name for path in args.files)
    if len(args.files) > 2:  # a long list of files would run off the picture's title
        names = f"{args.files[0].parent.name}/ ({len(args.files)} files)"
    write_outputs(result, outcomes, args.out, f"replay of {names}")
    summary = {
        "base_corpora": corpora,
        "overall": result.overall,
        "after_warmup": result.after_warmup,
        "retrains": len(result.retrains),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
