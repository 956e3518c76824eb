"""Accepting a comment: find (or create) its site, then store it once per (site, external_id)."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import tables
from service.schemas import CommentIn

DEFAULT_SITE = ""


def normalise_site_url(blog: str) -> str:
    """One spelling per site: lower-case scheme and host, no default port, no trailing slash."""
    blog = blog.strip()
    if not blog:
        return DEFAULT_SITE
    parts = urlsplit(blog if "://" in blog else f"http://{blog}")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    return f"{scheme}://{host}{path}" if host else blog.rstrip("/").lower()


def get_or_create_site(session: Session, account_id: int, url: str) -> tables.Site:
    """The account's site for `url`, created on first use (safe against concurrent creation)."""
    query = select(tables.Site).where(tables.Site.account_id == account_id, tables.Site.url == url)
    site = session.execute(query).scalar_one_or_none()
    if site is not None:
        return site
    site = tables.Site(account_id=account_id, url=url, callback_secret=secrets.token_hex(32))
    try:
        with session.begin_nested():
            session.add(site)
    except IntegrityError:
        return session.execute(query).scalar_one()
    return site


def find_comment(session: Session, site_id: int, external_id: str) -> tables.Comment | None:
    return session.execute(
        select(tables.Comment).where(
            tables.Comment.site_id == site_id, tables.Comment.external_id == external_id
        )
    ).scalar_one_or_none()


def store_comment(
    session: Session,
    site: tables.Site,
    body: CommentIn,
    external_id: str | None,
    callback_url: str | None = None,
) -> tuple[tables.Comment, bool]:
    """Add a comment (not committed); returns (comment, created). An existing one is returned.

    Two requests racing with the same (site, external_id) both get the one stored comment:
    the loser's insert fails on the unique constraint and it reads the winner's row.
    """
    if external_id is not None:
        existing = find_comment(session, site.id, external_id)
        if existing is not None:
            return existing, False
    comment = tables.Comment(
        site_id=site.id,
        external_id=external_id,
        callback_url=callback_url,
        status=tables.CommentStatus.PENDING,
        is_test=body.is_test,
        content=body.content,
        author=body.author,
        author_email=body.author_email,
        author_url=body.author_url,
        user_ip=body.user_ip,
        user_agent=body.user_agent,
        referrer=body.referrer,
        permalink=body.permalink,
        comment_type=body.comment_type,
        created_at=body.created_at,
        blog=body.blog,
        blog_lang=body.blog_lang,
        user_role=body.user_role,
        honeypot=body.honeypot,
        extra=body.all_extra(),
        received_at=tables.utcnow(),
        verdict=None,
    )
    if external_id is None:
        session.add(comment)
        session.flush()
        return comment, True
    try:
        with session.begin_nested():
            session.add(comment)
    except IntegrityError:
        existing = find_comment(session, site.id, external_id)
        if existing is None:
            raise
        return existing, False
    return comment, True
