"""Replay: play a labelled corpus through the running service and act as the site's moderators.

Comments go in, in date order and a few at a time (`batch`: comments arriving together),
through the webhook path (intake, queue, worker). For each one the replay reads the verdict the
comment got on arrival, then behaves as the site's people would:

- a comment the service put in the moderation queue (`unsure` or `spam`) is reviewed, and the
  moderator labels it with its true label;
- a spam that was published (`ham`) is reported as missed with probability `missed_report_rate`
  (seeded), through the platform's feedback path (Akismet `submit-spam`);
- a `discard` is never seen by anyone.

Labels trigger retraining on the service's normal trigger (a count of new labels, checked as
each label commits). After a batch's labels the replay waits until no retrain is queued or
running, and until the API serves the active model, before the next batch, so that the same
seed gives the same figures.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from training.corpora import Example, read_file
from training.metrics import flagged_metrics

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


def load_rows(paths: Sequence[Path]) -> list[Row]:
    """The files' comments in date order; an undated comment takes the date before it."""
    keyed: list[tuple[datetime, int, Example]] = []
    position = 0
    for path in paths:
        last = datetime.min.replace(tzinfo=UTC)
        for example in read_file(path):
            when = example.comment.created_at
            if when is not None:
                last = when if when.tzinfo else when.replace(tzinfo=UTC)
            keyed.append((last, position, example))
            position += 1
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [
        Row(number, example.id or f"row{position}", example.label, _fields(example))
        for number, (_, position, example) in enumerate(keyed)
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
) -> tuple[ReplayReport, list[Outcome]]:
    """Play `rows` through the service, `batch` comments at a time; the report and each
    comment's outcome."""
    rng = random.Random(seed)
    outcomes: list[Outcome] = []
    retrains: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    for start in range(0, len(rows), batch):
        # A batch arrives together; its moderators act once all of it is scored, in order.
        chunk = rows[start : start + batch]
        ids = [client.submit(row, site) for row in chunk]
        verdicts = [client.verdict(comment_id) for comment_id in ids]
        acted = False
        for row, comment_id, verdict in zip(chunk, ids, verdicts, strict=True):
            decision = str(verdict["decision"])
            version = str(verdict["model_version"])
            if not versions or versions[-1]["version"] != version:
                versions.append({"version": version, "first_comment": row.number})
            reviewed = decision in REVIEWED
            # Drawn for every comment, so that one change of decision does not shift the others.
            draw = rng.random()
            reported = decision == "ham" and row.label == 1 and draw < missed_report_rate
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
        if progress is not None:
            progress(chunk[-1].number + 1, len(rows))
    report = summarise(outcomes, retrains, versions, warmup, window)
    report.settings = {
        "seed": seed,
        "warmup": warmup,
        "window": window,
        "missed_report_rate": missed_report_rate,
        "batch": batch,
        "comments": len(rows),
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


@contextlib.contextmanager
def embedded_service(
    workdir: Path,
    corpora: Sequence[str],
    retrain_every: int | None,
    timeout: float = 120.0,
) -> Iterator[ServiceClient]:
    """A whole service of its own (Redis, worker, beat, API, SQLite) in `workdir`, fresh.

    Its first model is trained on `corpora` only, and so is every retrained one.
    """
    import shutil
    import sys

    from classifier.registry import activate
    from service import db
    from service.embedded import child_env, embedded_stack, free_port, wait_for
    from service.settings import Settings
    from training.corpora import GATE_VALIDATION_SHARE, load_bundled, split_corpus
    from training.train import train

    shutil.rmtree(workdir, ignore_errors=True)
    models = workdir / "models"
    # As the default model: the gate's validation split is left out.
    examples, _ = split_corpus(load_bundled(corpora), GATE_VALIDATION_SHARE)
    result = train(examples, models)
    activate(models, result.version, reason="the replay's first model")
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
    }
    if retrain_every is not None:
        overrides["retrain_label_count"] = retrain_every
    settings = Settings(_env_file=None, **overrides)
    db.upgrade(settings)
    api_key, token = _credentials(settings)
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
        client = ServiceClient(base_url, api_key, token, timeout)
        try:
            yield client
        finally:
            client.close()


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
