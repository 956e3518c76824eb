"""The database tables (SQLAlchemy 2 ORM): what commentguard stores.

accounts ─< api_keys
accounts ─< sites ─< comments ─ verdicts (one per comment)
                     comments ─< callback_deliveries ─< callback_attempts
                     comments ─< labels (every label kept; the newest one wins)
                                 labels ─ label_audit (before/after of each label event)
users ─< user_tokens
users ─< user_sites >─ sites (a moderator's sites; an admin sees all)
admin_audit (who revoked, disabled, ungranted or set thresholds, when, before/after)
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# The largest integer id of any table: PostgreSQL's `integer` (SQLite's are 64-bit). Routes
# refuse a larger id as invalid, rather than send the database a number it cannot compare.
MAX_ROW_ID = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every database (SQLite keeps no offset, so it is restored here)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    # Named constraints, so that Alembic migrations can refer to them on every database.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class CommentStatus(StrEnum):
    PENDING = "pending"
    SCORED = "scored"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Comment checks allowed per calendar month (reported by the Akismet usage-limit call);
    # None is unlimited.
    usage_limit: Mapped[int | None] = mapped_column(Integer, default=None)


class ApiKey(Base):
    """An account's key: only its HMAC-SHA256 and a short prefix for lookup are stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Site(Base):
    """A blog, created the first time an account sends a comment naming it."""

    __tablename__ = "sites"
    __table_args__ = (UniqueConstraint("account_id", "url", name="uq_sites_account_id_url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # Normalised blog URL; "" is the account's default site for comments that name none.
    url: Mapped[str] = mapped_column(String(2048))
    callback_secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The site's own decision thresholds (service/scoring/thresholds.py); null: the model's.
    threshold_unsure: Mapped[float | None] = mapped_column(Float, default=None)
    threshold_spam: Mapped[float | None] = mapped_column(Float, default=None)
    threshold_discard: Mapped[float | None] = mapped_column(Float, default=None)


class SiteAdapter(Base):
    """A site's own correction to the shared model, learned from its labels alone
    (`classifier.adapter`; `service/learning/adapters.py` fits it). One row per site, replaced
    whole on every refit; `version` grows by one each time, so a process sees a refit by reading
    it."""

    __tablename__ = "site_adapters"

    site_id: Mapped[int] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, default=1)
    base_version: Mapped[str] = mapped_column(String(64), default="")
    # classifier.adapter.SiteAdapter.to_bytes(): numpy arrays, no pickle.
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    n_spam: Mapped[int] = mapped_column(Integer, default=0)
    n_ham: Mapped[int] = mapped_column(Integer, default=0)
    # The labels it was fitted on ("<count>:<newest label id>"): a refit of the same labels
    # is skipped, so the task is safe to run twice.
    labels_seen: Mapped[str] = mapped_column(String(64), default="")
    # Thresholds chosen for the site on its labels' cross-validated scores; null: the model's.
    thresholds: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    fitted_at: Mapped[datetime] = mapped_column(default=utcnow)


class Comment(Base):
    """A comment as the platform sent it (every field of `classifier.Comment`)."""

    __tablename__ = "comments"
    __table_args__ = (
        UniqueConstraint("site_id", "external_id", name="uq_comments_site_id_external_id"),
        Index("ix_comments_status_received_at", "status", "received_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(255))
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), default=CommentStatus.PENDING)
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)

    content: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(Text, default="")
    author_email: Mapped[str] = mapped_column(Text, default="")
    author_url: Mapped[str] = mapped_column(Text, default="")
    user_ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(Text, default="")
    referrer: Mapped[str] = mapped_column(Text, default="")
    permalink: Mapped[str] = mapped_column(Text, default="")
    comment_type: Mapped[str] = mapped_column(String(64), default="")
    blog: Mapped[str] = mapped_column(Text, default="")
    blog_lang: Mapped[str] = mapped_column(String(64), default="")
    user_role: Mapped[str] = mapped_column(String(64), default="")
    honeypot: Mapped[str] = mapped_column(Text, default="")
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)

    created_at: Mapped[datetime | None] = mapped_column(default=None)  # the platform's time
    received_at: Mapped[datetime] = mapped_column(default=utcnow)  # when we accepted it
    # When the content and personal fields were erased (retention, or `privacy forget`).
    purged_at: Mapped[datetime | None] = mapped_column(default=None)

    site: Mapped[Site] = relationship(lazy="raise")
    verdict: Mapped[Verdict | None] = relationship(back_populates="comment", lazy="selectin")


class Verdict(Base):
    """The classifier's answer for a comment; the unique comment_id makes scoring happen once."""

    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("comments.id", ondelete="CASCADE"), unique=True
    )
    score: Mapped[float] = mapped_column(Float)
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(String(100))
    duration_ms: Mapped[float] = mapped_column(Float)
    scored_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Near-copies share it (usually): the moderation queue's review order shows one of a group
    # before a second (service/neardup/signing.py `cluster_key`). None: scored before it existed.
    cluster: Mapped[int | None] = mapped_column(BigInteger, default=None)

    comment: Mapped[Comment] = relationship(back_populates="verdict", lazy="raise")


class CallbackDelivery(Base):
    """One event to POST to a comment's callback_url, retried until delivered or given up."""

    __tablename__ = "callback_deliveries"
    __table_args__ = (
        # One delivery per comment and event, so a retried scoring task cannot send twice.
        UniqueConstraint("comment_id", "event", name="uq_callback_deliveries_comment_id_event"),
        Index("ix_callback_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    comment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("comments.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32), default="verdict")
    url: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class CallbackAttempt(Base):
    """One HTTP attempt at a delivery, kept for the platform's owner to debug their endpoint."""

    __tablename__ = "callback_attempts"
    __table_args__ = (
        UniqueConstraint("delivery_id", "number", name="uq_callback_attempts_delivery_id_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("callback_deliveries.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[float] = mapped_column(Float)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class LabelValue(StrEnum):
    SPAM = "spam"
    HAM = "ham"


class LabelSource(StrEnum):
    FEEDBACK = "feedback"  # the platform reported it (Akismet submit-spam / submit-ham)
    MODERATOR = "moderator"  # a person decided in commentguard


class Label(Base):
    """What a comment really is, according to someone other than the classifier.

    Rows are never updated or deleted (they are the audit trail): the label of a comment is its
    newest row, the one with the highest id.
    """

    __tablename__ = "labels"
    __table_args__ = (
        Index("ix_labels_comment_id_id", "comment_id", "id"),
        Index("ix_labels_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("comments.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(16))
    # Who: "akismet:<key prefix>" for platform feedback, a user name for a moderator.
    actor: Mapped[str | None] = mapped_column(String(200), default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    # The label brought the comment in: it was never checked, so it was no API call, and no
    # verdict of ours was right or wrong about it.
    created_comment: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- moderation: users, their tokens and sites, and the label audit log ---------------------


class UserRole(StrEnum):
    MODERATOR = "moderator"  # labels comments of the sites granted to them
    ADMIN = "admin"  # sees and labels every site


class User(Base):
    """A person who moderates: separate from accounts (platforms) and their API keys."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # argon2id, for the web console's login; None until a password is set.
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserToken(Base):
    """A user's bearer token: like an API key, only its HMAC and a lookup prefix are stored."""

    __tablename__ = "user_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class UserSite(Base):
    """A site a moderator may see and label (admins need none)."""

    __tablename__ = "user_sites"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    site_id: Mapped[int] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LabelKind(StrEnum):
    """What a label says about the verdict it follows."""

    FALSE_POSITIVE = "false_positive"  # ham, where the verdict was spam or discard
    MISSED_SPAM = "missed_spam"  # spam, where the verdict was ham
    RESOLUTION = "resolution"  # either, where the verdict was unsure (held for a moderator)
    CONFIRMATION = "confirmation"  # agrees with the verdict
    UNSCORED = "unscored"  # the comment had no verdict yet
    REMOVED = "removed"  # a first label taken back (console undo): the comment is unlabelled


class LabelAudit(Base):
    """One label event: who changed a comment's label, when, from what, to what.

    Written with each `labels` row by `service.moderation.labels.apply_label`, whatever the source.
    """

    __tablename__ = "label_audit"
    __table_args__ = (
        Index("ix_label_audit_comment_id_id", "comment_id", "id"),
        Index("ix_label_audit_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # None once the label is gone (a first label undone) and on the event that removed it:
    # the audit keeps both events, what was decided and that it was taken back.
    label_id: Mapped[int | None] = mapped_column(
        ForeignKey("labels.id", ondelete="SET NULL"), unique=True, default=None
    )
    comment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("comments.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    actor: Mapped[str | None] = mapped_column(String(200), default=None)
    source: Mapped[str] = mapped_column(String(16))
    before: Mapped[str | None] = mapped_column(String(8), default=None)
    after: Mapped[str | None] = mapped_column(String(8))  # None: the label was removed
    kind: Mapped[str] = mapped_column(String(16))
    # The verdict's decision when the label was applied (None: not scored yet).
    decision: Mapped[str | None] = mapped_column(String(16), default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- credentials and settings changed by admins ----------------------------------------------


class AdminAction(StrEnum):
    """What an admin did (every entry of `admin_audit` is one of these)."""

    KEY_REVOKED = "key_revoked"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    TOKENS_REVOKED = "tokens_revoked"
    SITE_UNGRANTED = "site_ungranted"
    THRESHOLDS_SET = "thresholds_set"


class AdminAudit(Base):
    """One change to a credential, a grant or a site's thresholds: who, when, before, after.

    Written only by `service.audit.record`, in the transaction of the change it describes;
    rows are never updated or deleted.
    """

    __tablename__ = "admin_audit"
    __table_args__ = (Index("ix_admin_audit_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(32))
    # Where the change came from: "cli", "api" or "console".
    source: Mapped[str] = mapped_column(String(16))
    # The admin's user name over the API and the console; the system user for the CLI.
    actor: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    # What changed, as "<kind>:<id>" (api_key:3, user:5, site:7).
    target: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- the moderator console: login sessions (failed logins are counted in Redis) ---------------


class ConsoleSession(Base):
    """A console login. The cookie carries the signed session token; only its SHA-256 is here."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # A keyed hash of the address it logged in from (service.privacy.hash_ip), never the address.
    remote_addr: Mapped[str] = mapped_column(String(64), default="")


# The moderation queue, least sure first: its page is read in this order and stops after a page,
# whatever the queue's length (an expression index; SQLite and PostgreSQL both have them).
Index(
    "ix_verdicts_queue",
    Verdict.decision,
    func.abs(Verdict.score - 0.5),
    Verdict.comment_id,
)
