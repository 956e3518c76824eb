"""The HTTP API's request and response types (pydantic), as they appear in the OpenAPI schema."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from classifier import Decision
from service import tables

SHORT = 512
LONG = 4096


def _in_utc(value: datetime) -> datetime:
    # A time near datetime's limits can fall outside them once converted to UTC
    # (0001-01-01T00:00+14:00): refused here rather than where it is compared or stored.
    try:
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except OverflowError as exc:
        raise ValueError("out of range once converted to UTC") from exc


# A time from a request: naive means UTC; converted to UTC, and within range there.
UtcDateTime = Annotated[datetime, AfterValidator(_in_utc)]


MAX_NESTING = 32


def check_text(value: Any) -> Any:
    """Refuse what no database stores as text or JSON: NUL (PostgreSQL), lone surrogates (not
    UTF-8), NaN and infinities (not JSON), and lists or dicts nested deeper than MAX_NESTING
    (which would take the JSON encoder past Python's recursion limit)."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("must be a finite number")
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("must not contain NUL characters")
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise ValueError("must not contain lone surrogates (not UTF-8)") from exc
        elif isinstance(item, dict | list):
            if depth >= MAX_NESTING:
                raise ValueError(f"must not be nested more than {MAX_NESTING} levels deep")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return value


# The Akismet protocol's names for our fields (the others, such as `user_ip` or `permalink`,
# are spelled alike): a platform moving from Akismet may keep its field names.
AKISMET_NAMES = {
    "comment_content": "content",
    "comment_author": "author",
    "comment_author_email": "author_email",
    "comment_author_url": "author_url",
    "comment_date_gmt": "created_at",
}


def _also(akismet_name: str) -> str:
    return f"Also accepted as Akismet's `{akismet_name}`."


class CommentIn(BaseModel):
    """A comment with the Akismet protocol's fields (under our names or Akismet's).

    An unknown top-level field is refused (422 naming it) rather than dropped, so that a
    misspelt field cannot silently keep data from the model; the platform's own data goes
    in `extra`.
    """

    model_config = ConfigDict(extra="forbid")

    content: str = Field(
        description="The comment's text (at most 64 KiB of UTF-8). " + _also("comment_content")
    )
    author: str = Field(default="", max_length=SHORT, description=_also("comment_author"))
    author_email: str = Field(
        default="", max_length=SHORT, description=_also("comment_author_email")
    )
    author_url: str = Field(default="", max_length=LONG, description=_also("comment_author_url"))
    user_ip: str = Field(default="", max_length=64)
    user_agent: str = Field(default="", max_length=LONG)
    referrer: str = Field(default="", max_length=LONG)
    permalink: str = Field(default="", max_length=LONG)
    comment_type: str = Field(default="", max_length=64)
    created_at: UtcDateTime | None = Field(
        default=None, description="When the comment was written. " + _also("comment_date_gmt")
    )
    blog: str = Field(
        default="", max_length=2048, description="The site's URL; sites are created on first use."
    )
    blog_lang: str = Field(default="", max_length=64)
    user_role: str = Field(default="", max_length=64)
    honeypot: str = Field(default="", max_length=LONG)
    is_test: bool = Field(default=False, description="A test submission (kept apart in stats).")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="The platform's own data, stored with the comment."
    )

    @model_validator(mode="before")
    @classmethod
    def _akismet_names(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(name in data for name in AKISMET_NAMES):
            return data
        data = dict(data)
        for theirs, ours in AKISMET_NAMES.items():
            if theirs not in data:
                continue
            value = data.pop(theirs)
            if ours in data and data[ours] != value:
                raise PydanticCustomError(
                    "conflicting_names",
                    "{theirs} and {ours} name the same field and disagree: send one of them",
                    {"theirs": theirs, "ours": ours},
                )
            data[ours] = value
        return data

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL; refusing it here keeps both databases alike.
        return check_text(value)


class WebhookCommentIn(CommentIn):
    """A comment to score in the background, with a callback for the verdict."""

    external_id: str = Field(
        min_length=1,
        max_length=255,
        description="The platform's id. Resubmitting it with the same comment answers the "
        "stored one (200); with a different comment, 409 with the stored comment's id.",
    )
    callback_url: str | None = Field(
        default=None, max_length=2048, description="Where to POST the signed verdict."
    )


class CheckIn(CommentIn):
    """A comment to score now."""

    external_id: str | None = Field(default=None, min_length=1, max_length=255)


class ReasonOut(BaseModel):
    feature: str
    description: str
    weight: float


class NearDuplicateReasonOut(ReasonOut):
    """The comment near-duplicates one a moderator labelled: it takes that label at once."""

    kind: Literal["near_duplicate"] = "near_duplicate"
    comment_id: uuid.UUID = Field(description="The labelled comment it near-duplicates.")
    label: Literal["spam", "ham"] = Field(description="That comment's label.")
    similarity: float = Field(
        ge=0, le=1, description="Estimated Jaccard similarity of the two texts' shingles."
    )


def reason_out(reason: dict[str, Any]) -> ReasonOut:
    """A stored reason as its response type (near-duplicate reasons carry the match)."""
    if reason.get("kind") == "near_duplicate":
        return NearDuplicateReasonOut(**reason)
    return ReasonOut(**reason)


class VerdictOut(BaseModel):
    score: float = Field(description="Calibrated probability that the comment is spam.")
    decision: Decision
    reasons: list[NearDuplicateReasonOut | ReasonOut] = Field(
        description="What decided the verdict, strongest first. A near-duplicate of a labelled "
        "comment comes first and decides (`kind: near_duplicate`, with the matched comment)."
    )
    model_version: str
    scored_at: datetime

    @classmethod
    def from_row(cls, row: tables.Verdict) -> VerdictOut:
        return cls(
            score=row.score,
            decision=Decision(row.decision),
            reasons=[reason_out(reason) for reason in row.reasons],
            model_version=row.model_version,
            scored_at=row.scored_at,
        )


class Links(BaseModel):
    self: str


class CommentOut(BaseModel):
    """A comment's state, and its verdict once scored."""

    id: uuid.UUID
    external_id: str | None
    site: str = Field(description='The site\'s normalised URL ("" for the default site).')
    status: tables.CommentStatus
    is_test: bool
    received_at: datetime
    verdict: VerdictOut | None
    links: Links

    @classmethod
    def from_row(cls, row: tables.Comment, site_url: str) -> CommentOut:
        return cls(
            id=row.id,
            external_id=row.external_id,
            site=site_url,
            status=tables.CommentStatus(row.status),
            is_test=row.is_test,
            received_at=row.received_at,
            verdict=VerdictOut.from_row(row.verdict) if row.verdict is not None else None,
            links=Links(self=f"/v1/comments/{row.id}"),
        )


class CallbackBody(CommentOut):
    """What a callback POSTs: the comment's state with its verdict."""

    event: str = "verdict"


class SiteOut(BaseModel):
    id: int
    url: str
    callback_secret: str = Field(description="Verifies X-Commentguard-Signature on callbacks.")
    created_at: datetime


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable, e.g. `validation_error`, `unauthorized`.")
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    """Every error response has this shape."""

    error: ErrorBody


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    checks: dict[str, str] = Field(description='"ok", or what failed, for model/database/redis.')
    model_version: str | None = None


# --- moderation ----------------------------------------------------------------------------

NOTE = 2000
BULK_LIMIT = 500


class LabelEventOut(BaseModel):
    """A label event: what a comment now is, what it was, and what that says of the verdict."""

    id: int = Field(description="The label's id; the newest label of a comment wins.")
    label: tables.LabelValue
    previous: tables.LabelValue | None = Field(description="The label it replaced, if any.")
    kind: tables.LabelKind = Field(
        description="false_positive (ham, verdict spam/discard), missed_spam (spam, verdict "
        "ham), resolution (verdict unsure), confirmation (agrees), unscored (no verdict yet)."
    )
    source: tables.LabelSource
    actor: str | None = Field(description="The moderator's name, or `akismet:<key prefix>`.")
    note: str | None
    created_at: datetime


class LabelCallbackBody(CommentOut):
    """What a label callback POSTs: the comment with its verdict, and the moderator's label.

    Sent (signed like the verdict callback) to the comment's callback_url each time a moderator
    labels it; the `X-Commentguard-Delivery` id differs per label.
    """

    event: str = "label"
    label: LabelEventOut


class LabelIn(BaseModel):
    label: tables.LabelValue
    note: str | None = Field(default=None, max_length=NOTE)


class BulkLabelItem(LabelIn):
    comment_id: uuid.UUID


class BulkLabelIn(BaseModel):
    """Labels applied together: all of them, or (if any comment is not found) none."""

    items: list[BulkLabelItem] = Field(min_length=1, max_length=BULK_LIMIT)


class AppliedLabelOut(BaseModel):
    comment_id: uuid.UUID
    site_id: int
    label_id: int
    label: tables.LabelValue
    previous: tables.LabelValue | None
    kind: tables.LabelKind
    callback: bool = Field(description="Whether the platform is told by a signed callback.")


class BulkLabelOut(BaseModel):
    applied: list[AppliedLabelOut]


class QueueItemOut(BaseModel):
    """A comment awaiting a moderator, with what the moderator needs to decide."""

    id: uuid.UUID
    external_id: str | None
    site_id: int
    site: str
    content: str
    author: str
    author_email: str
    author_url: str
    user_ip: str
    permalink: str
    received_at: datetime
    uncertainty: float | None = Field(description="|score − 0.5|: 0 is the least sure.")
    verdict: VerdictOut | None
    callback: bool = Field(
        default=False,
        description="The comment named a callback URL, so a moderator's label is sent to the "
        "platform; without one (every comment checked through the Akismet API) the label stays "
        "in commentguard and the platform keeps what it did with the answer it got.",
    )

    @classmethod
    def from_row(cls, row: tables.Comment, site_url: str) -> QueueItemOut:
        verdict = row.verdict
        return cls(
            id=row.id,
            external_id=row.external_id,
            site_id=row.site_id,
            site=site_url,
            content=row.content,
            author=row.author,
            author_email=row.author_email,
            author_url=row.author_url,
            user_ip=row.user_ip,
            permalink=row.permalink,
            received_at=row.received_at,
            uncertainty=abs(verdict.score - 0.5) if verdict is not None else None,
            verdict=VerdictOut.from_row(verdict) if verdict is not None else None,
            callback=bool(row.callback_url),
        )


class QueuePageOut(BaseModel):
    items: list[QueueItemOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")


class ThresholdsIn(BaseModel):
    """A site's own thresholds (probabilities of spam); null or missing: the model's."""

    model_config = ConfigDict(extra="forbid")

    unsure: float | None = Field(default=None, ge=0, le=1, description="Held for review from.")
    spam: float | None = Field(default=None, ge=0, le=1, description="Spam from.")
    discard: float | None = Field(default=None, ge=0, le=1, description="Discarded from.")


class ThresholdsOut(BaseModel):
    unsure: float
    spam: float
    discard: float


class SiteThresholdsOut(BaseModel):
    site_id: int
    site: str
    own: ThresholdsIn = Field(description="The site's own thresholds; null: the model's.")
    effective: ThresholdsOut | None = Field(
        description="What its comments are decided with (null: no model loaded)."
    )


class SiteStatsOut(BaseModel):
    """One site's counts; each comment counts once, by its verdict and its newest label."""

    site_id: int
    site: str
    account_id: int
    checked: int = Field(description="Comments scored (tests and feedback imports left out).")
    ham: int
    unsure: int
    spam: int
    discard: int
    pending: int = Field(description="Received, not scored yet.")
    labelled_spam: int
    labelled_ham: int
    missed_spam: int = Field(description="Labelled spam where the verdict was ham.")
    false_positives: int = Field(description="Labelled ham where the verdict was spam or discard.")
    unlabelled_unsure: int = Field(description="Unsure and not labelled: the default queue.")
    thresholds: ThresholdsOut | None = Field(
        default=None, description="The thresholds this site's comments are decided with."
    )
    own_thresholds: ThresholdsIn = Field(
        default_factory=lambda: ThresholdsIn(),
        description="The site's own thresholds; null: the model's.",
    )


class StatsOut(BaseModel):
    sites: list[SiteStatsOut]


class AuditOut(BaseModel):
    id: int
    label_id: int | None = Field(description="None once the label was taken back (undone)")
    actor: str | None
    user_id: int | None
    source: tables.LabelSource
    before: tables.LabelValue | None
    after: tables.LabelValue | None = Field(description="None: the label was removed")
    kind: tables.LabelKind
    decision: str | None
    note: str | None
    created_at: datetime


class DeliveryOut(BaseModel):
    id: uuid.UUID
    event: str
    status: tables.DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class HistoryOut(BaseModel):
    """Everything that happened to a comment: verdict, labels, audit, callbacks."""

    comment: QueueItemOut
    label: tables.LabelValue | None = Field(description="The current label (the newest).")
    audit: list[AuditOut]
    deliveries: list[DeliveryOut]


class MeOut(BaseModel):
    id: int
    name: str
    role: tables.UserRole
    site_ids: list[int] | None = Field(description="The sites this user sees; null: all.")


class UserOut(BaseModel):
    id: int
    name: str
    role: tables.UserRole
    disabled: bool
    has_password: bool
    tokens: int
    sites: list[str]


# --- the model registry (service/api/routes/models.py) -----------------------------------------


class ModelVersionOut(BaseModel):
    version: str
    status: str = Field(description="candidate, active, retired or rejected.")
    created_at: str | None = None
    n_examples: int | None = None
    thresholds: dict[str, float] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    gate: dict[str, Any] | None = Field(
        default=None, description="The promotion gate's decision and numbers (retrained only)."
    )
    sites: list[str] = Field(default_factory=list, description="Sites with per-site features.")
    run_id: str | None = None
    reason: str = ""


class ModelsOut(BaseModel):
    active: str | None
    versions: list[ModelVersionOut]


class RetrainQueuedOut(BaseModel):
    run_id: str
    status: str
    url: str = Field(description="Where the run's outcome can be read.")


class ActivatedOut(BaseModel):
    active: str
    previous: str | None


# --- credentials and the admin audit (service/api/routes/admin.py) ------------------------------


class ApiKeyOut(BaseModel):
    """An account's API key, without its secret (only its lookup prefix)."""

    id: int
    account_id: int
    account: str
    name: str
    prefix: str = Field(description="The key's first characters: enough to tell keys apart.")
    created_at: datetime
    revoked_at: datetime | None


class TokensRevokedOut(BaseModel):
    user_id: int
    tokens: int = Field(description="Live tokens revoked.")
    console_sessions: int = Field(description="Console sessions ended.")


class AdminAuditOut(BaseModel):
    """One change an admin (or the command line) made to a credential, grant or thresholds."""

    id: int
    action: tables.AdminAction
    source: str = Field(description="`api`, `console` or `cli`.")
    actor: str
    user_id: int | None
    target: str = Field(description="What changed: `api_key:<id>`, `user:<id>`, `site:<id>`.")
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime
