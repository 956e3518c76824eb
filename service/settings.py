"""Configuration: one settings class, read from `COMMENTGUARD_*` variables or `.env` at runtime."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRET = "changethis"
DEFAULT_RETRAIN_CRON = "0 3 * * *"


class Settings(BaseSettings):
    """Every knob of the service; `.env.example` documents each one."""

    model_config = SettingsConfigDict(
        env_prefix="COMMENTGUARD_", env_file=".env", extra="ignore", frozen=True
    )

    environment: Literal["local", "production"] = "local"
    secret_key: str = PLACEHOLDER_SECRET
    log_level: str = "INFO"

    database_url: str = "sqlite:///./var/commentguard.db"
    database_pool_size: int = Field(default=10, ge=1)
    redis_url: str | None = None
    data_dir: Path = Path("var")

    models_dir: Path = Path("models")
    model_reload_check_seconds: float = Field(default=1.0, ge=0)
    threshold_unsure: float | None = Field(default=None, ge=0, le=1)
    threshold_spam: float | None = Field(default=None, ge=0, le=1)
    threshold_discard: float | None = Field(default=None, ge=0, le=1)

    max_content_bytes: int = Field(default=65536, ge=1)
    max_body_bytes: int = Field(default=512 * 1024, ge=1024)
    # Requests that arrive together are scored and stored together (service/intake/batching.py):
    # at most this many at once; 1 handles each on its own.
    batch_max_size: int = Field(default=64, ge=1, le=1000)
    # Threads per API process taking batches from each queue: with 2, one batch's database
    # and Redis round trips overlap the scoring of the next.
    batch_threads: int = Field(default=2, ge=1, le=16)
    # Webhook comments committed within this long of each other are queued as one message,
    # scored by a worker in one batch: a little latency for much less work per comment.
    queue_linger_seconds: float = Field(default=0.05, ge=0, le=1)

    callback_timeout_seconds: float = Field(default=5.0, gt=0)
    callback_max_attempts: int = Field(default=8, ge=1)
    callback_backoff_seconds: float = Field(default=2.0, gt=0)
    callback_backoff_max_seconds: float = Field(default=1800.0, gt=0)
    callback_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    pending_sweep_age_seconds: float = Field(default=60.0, gt=0)
    pending_sweep_interval_seconds: float = Field(default=30.0, gt=0)
    sweep_batch_size: int = Field(default=1000, ge=1)

    task_soft_time_limit_seconds: int = Field(default=30, ge=1)
    task_time_limit_seconds: int = Field(default=60, ge=1)
    callback_worker_threads: int = Field(default=16, ge=1)

    # --- per-site learning (service/learning/adapters.py, classifier/adapter.py) ---
    # Regularisation of a site's own weights (larger: more labels before they count) and of
    # its recalibration of the shared model's score (larger: closer to the shared model).
    adapt_l2: float = Field(default=0.3, gt=0)
    adapt_prior: float = Field(default=30.0, gt=0)
    # The recalibration's prior weakens as a site's labels come: half as strong at this many
    # labels (0: it stays `adapt_prior`), never below `adapt_prior_min` (classifier/adapter.py).
    adapt_prior_labels: float = Field(default=20.0, ge=0)
    adapt_prior_min: float = Field(default=3.0, gt=0)
    # Labels per class (spam AND ham) a site needs before its adapter chooses the site's own
    # thresholds (on its labels' cross-validated scores); 0: the shared model's thresholds.
    adapt_min_site_threshold_labels: int = Field(default=10, ge=0)

    # --- retraining (service/learning/retraining.py, training/retrain.py) ---
    # Cron string (minute hour day-of-month month day-of-week, UTC) of the scheduled retrain.
    retrain_cron: str = DEFAULT_RETRAIN_CRON
    # New labels (since the last run) that trigger a retrain; checked every interval below.
    # 50: a site's first labels count soon, and a retrain of that size takes seconds (the
    # replays comparing 50 and 100 are in docs/benchmarks.md, "Replay").
    retrain_label_count: int = Field(default=50, ge=1)
    # Whether the shared model also trains on the sites' labels. Off by default: the shared
    # model serves every account, and one account's labels must not move another's verdicts
    # (docs/learning.md); each site learns from its own labels through its adapter instead.
    # Turn it on only where every account is trusted alike (one organisation's sites).
    retrain_shared_labels: bool = False
    retrain_check_interval_seconds: float = Field(default=300.0, gt=0)
    # Bundled corpora trained on beside the labels (comma-separated names).
    retrain_corpora: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["youtube", "instagram", "sms"]
    )
    # How much a label weighs against a corpus row, with shared labels on. 10: a site's few
    # hundred labels then outweigh the corpus rows where they disagree (docs/benchmarks.md,
    # "Replay", compares 3, 10 and 30).
    retrain_label_weight: float = Field(default=10.0, gt=0)
    # Labels per class (spam AND ham) a site needs before it gets per-site features.
    retrain_min_site_labels_per_class: int = Field(default=20, ge=1)
    # Labels per class (spam AND ham), among those a retrain scores unseen, a site needs before
    # the retrained model carries thresholds learned for it (training/site_thresholds.py);
    # 0: every site decides with the model's thresholds.
    retrain_min_site_threshold_labels: int = Field(default=20, ge=0)
    # Newest share of the labels held out for the promotion gate.
    retrain_holdout_share: float = Field(default=0.2, gt=0, lt=1)
    # How far the candidate's MCC may fall below the active model's and still be promoted.
    retrain_mcc_tolerance: float = Field(default=0.02, ge=0, le=1)
    retrain_seed: int = 0
    # Celery time limits of the retraining task (it runs alone on its own queue).
    retrain_soft_time_limit_seconds: int = Field(default=900, ge=1)
    retrain_time_limit_seconds: int = Field(default=1200, ge=1)

    @field_validator("retrain_corpora", mode="before")
    @classmethod
    def _split_corpora(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("retrain_cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        if value == DEFAULT_RETRAIN_CRON:
            # Known good (the beat schedule is built from it in service/worker/queue.py), and every
            # command reads the settings: `score` should not import Celery to check it.
            return value
        from celery.schedules import crontab

        fields = value.split()
        if len(fields) != 5:
            raise ValueError(f"retrain_cron needs 5 fields (m h dom mon dow), got {value!r}")
        try:
            crontab(*fields)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"retrain_cron {value!r} is not a valid cron string: {exc}") from exc
        return value

    # --- the moderator web console (/console) ---
    # How long a console login lasts, seconds (the session ends earlier on logout).
    console_session_seconds: int = Field(default=12 * 3600, ge=60)
    # Failed logins within the lockout window that lock an address out of a user name for the
    # rest of that window; once a name has this many from anywhere, every address that failed
    # for it is locked out of it too (an address that has not failed never is). Counted in
    # Redis, so every API process sees the same counts (service/console/auth.py).
    console_login_max_failures: int = Field(default=5, ge=1)
    console_login_lockout_seconds: int = Field(default=900, ge=1)
    # Password checks (login attempts) per client address per minute; past it the login
    # answers 429 without checking anything.
    console_login_attempts_per_ip: int = Field(default=20, ge=1)
    # Send the session cookie with `Secure` (HTTPS only). None: on in production, off locally.
    console_secure_cookie: bool | None = None
    # Comments per page of the moderation queue.
    console_page_size: int = Field(default=50, ge=1, le=500)

    # Near-duplicate memory (service/neardup/): a labelled comment's near-copies take its
    # label at once, before any retraining. Needs redis_url; off without it.
    near_duplicate_enabled: bool = True
    # Estimated Jaccard similarity of two texts' character 5-gram shingles to count as a match.
    near_duplicate_threshold: float = Field(default=0.8, gt=0, le=1)
    # What a near-copy of a labelled spam becomes: "discard" (never queued: a moderator has
    # already judged this text, and a campaign's copies would otherwise fill the queue again)
    # or "spam" (the spam folder, reviewed).
    near_duplicate_spam_decision: Literal["spam", "discard"] = "discard"
    # MinHash permutations per signature (more: a finer similarity estimate, a bigger entry).
    near_duplicate_num_perm: int = Field(default=128, ge=16, le=1024)
    # Texts with fewer distinct shingles are neither remembered nor matched (too short to tell).
    near_duplicate_min_shingles: int = Field(default=24, ge=1)
    # Redis socket timeout of a memory call: a slow Redis costs scoring at most this much.
    near_duplicate_timeout_seconds: float = Field(default=0.25, gt=0)

    # --- observability, protection and privacy (docs/privacy.md, docs/deploy.md) ---
    # Log lines as one JSON object each ("json") or as plain text ("text"); None: text in
    # local development, JSON otherwise.
    log_format: Literal["json", "text"] | None = None
    # Also append the log lines to this file (the worker's own output included).
    log_file: Path | None = None
    # Requests per window allowed per API key and per client IP (0: no limit); Redis-backed,
    # so they hold across API processes; off when no Redis is configured.
    rate_limit_per_key: int = Field(default=6000, ge=0)
    rate_limit_per_ip: int = Field(default=6000, ge=0)
    rate_limit_window_seconds: int = Field(default=60, ge=1)
    # Store commenters' IP addresses as given instead of as keyed hashes.
    store_raw_ip: bool = False
    # Comments older than this many days lose their content and personal fields (verdicts,
    # labels and counts stay); 0 keeps everything forever.
    retention_days: int = Field(default=90, ge=0)
    # How often beat runs the retention purge, seconds.
    retention_interval_seconds: float = Field(default=3600.0, gt=0)
    # How long /metrics reuses the database counts it read, seconds.
    metrics_cache_seconds: float = Field(default=5.0, ge=0)
    # If set, GET /metrics requires `Authorization: Bearer <this token>` from anywhere.
    metrics_token: str | None = None
    # Without a token, GET /metrics answers only clients in these networks (comma-separated
    # CIDRs; default: the machine itself); others get 403. Behind a proxy on the same machine
    # every client looks local: set a token there.
    metrics_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"]
    )

    # Sites an account may have: a comment naming a new blog past this many is refused (422
    # on /v1, `invalid` on the Akismet calls), so that one key cannot grow the sites table
    # without end. 0: no limit. Admins granting a site create it whatever the count.
    max_sites_per_account: int = Field(default=1000, ge=0)

    # Per-site thresholds (service/scoring/thresholds.py): how long an API process reuses a site's
    # row (its id and thresholds) before reading it again, seconds. An admin's change takes
    # effect at once in the process that made it and within this long in every other one
    # (workers read the site with each comment, so at once). API keys are cached as long: a
    # revoked key is refused by every API process within this long.
    site_cache_seconds: float = Field(default=5.0, ge=0)

    @field_validator("metrics_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for network in value:
                ipaddress.ip_network(str(network), strict=False)  # ValueError if not a CIDR
        return value

    @field_validator("callback_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        # Comma-separated in the environment ("localhost:9000,hooks.internal"), a list in code.
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.environment != "local" and self.secret_key in ("", PLACEHOLDER_SECRET):
            raise ValueError(
                "COMMENTGUARD_SECRET_KEY must be set to a random value outside local "
                'development (e.g. python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        if self.environment != "local" and len(self.secret_key) < 16:
            raise ValueError("COMMENTGUARD_SECRET_KEY must be at least 16 characters")
        if self.task_soft_time_limit_seconds >= self.task_time_limit_seconds:
            raise ValueError("task_soft_time_limit_seconds must be below task_time_limit_seconds")
        if self.retrain_soft_time_limit_seconds >= self.retrain_time_limit_seconds:
            raise ValueError(
                "retrain_soft_time_limit_seconds must be below retrain_time_limit_seconds"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def json_logs(self) -> bool:
        """Whether log lines are JSON (the default outside local development)."""
        if self.log_format is None:
            return self.environment != "local"
        return self.log_format == "json"

    @property
    def console_cookie_secure(self) -> bool:
        if self.console_secure_cookie is not None:
            return self.console_secure_cookie
        return self.environment != "local"
