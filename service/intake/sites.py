"""A comment's site: found (or created) for the account and the comment's `blog`, and cached."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from classifier.adapter import SiteAdapter
from service import tables
from service.learning.adapters import AdapterCache, Learned
from service.scoring.thresholds import SiteThresholds

DEFAULT_SITE = ""


class SiteLimitReached(ValueError):
    """The account has as many sites as it may (`max_sites_per_account`): no new one."""

    def __init__(self, account_id: int, limit: int) -> None:
        super().__init__(
            f"this account has reached its limit of {limit} sites: a comment can only name "
            "one of its existing sites (blog)"
        )
        self.account_id = account_id
        self.limit = limit


def normalise_site_url(blog: str) -> str:
    """One spelling per site: lower-case scheme and host, no default port, no trailing slash."""
    blog = blog.strip()
    if not blog:
        return DEFAULT_SITE
    try:
        parts = urlsplit(blog if "://" in blog else f"http://{blog}")
    except ValueError:  # such as an unclosed "[": not a URL, but still a name for the site
        return blog.rstrip("/").lower()
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


@dataclass(frozen=True, slots=True)
class SiteRef:
    id: int
    url: str
    thresholds: SiteThresholds = field(default_factory=SiteThresholds)
    # What the site's labels taught (service/learning/adapters.py).
    adapter: SiteAdapter | None = None


class SiteCache:
    """Sites by (account, normalised URL), each kept for `ttl_seconds`.

    A site's id and URL never change, but an admin may change its thresholds: an entry is
    read again after `ttl_seconds`, so a change made in another process takes effect here
    within that long (`forget` makes it immediate in the process that made it).

    `max_sites` (per account; 0: no limit) is the limit `resolve_site` creates sites within.
    """

    def __init__(
        self,
        size: int = 100_000,
        ttl_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_sites: int = 0,
    ) -> None:
        self.size = size
        self.ttl_seconds = ttl_seconds
        self.max_sites = max_sites
        self._clock = clock
        self._sites: dict[tuple[int, str], tuple[float, SiteRef]] = {}
        # Read with the site, and as often: a site's new adapter takes effect as a threshold
        # change does.
        self.adapters = AdapterCache(ttl_seconds, clock)

    def get(self, account_id: int, url: str) -> SiteRef | None:
        entry = self._sites.get((account_id, url))
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def put(self, account_id: int, site: SiteRef) -> None:
        if len(self._sites) >= self.size:
            self._sites.clear()
        self._sites[(account_id, site.url)] = (self._clock() + self.ttl_seconds, site)

    def forget(self, account_id: int, url: str) -> None:
        self._sites.pop((account_id, url), None)


def site_ref(row: tables.Site, learned: Learned | None = None) -> SiteRef:
    if learned is None:
        return SiteRef(row.id, row.url, SiteThresholds.of(row))
    return SiteRef(row.id, row.url, SiteThresholds.of(row, learned.thresholds), learned.adapter)


def resolve_site(session: Session, cache: SiteCache, account_id: int, blog: str) -> SiteRef:
    """The account's site for a comment's `blog`, created on first use (SiteLimitReached if
    the account has `cache.max_sites` already)."""
    url = normalise_site_url(blog)
    site = cache.get(account_id, url)
    if site is None:
        row = get_or_create_site(session, account_id, url, cache.max_sites)
        site = site_ref(row, cache.adapters.get(session, row.id))
        # Committed before it is cached: a site created in a transaction that then failed
        # must not be handed to later requests (their comments would name no site).
        session.commit()
        cache.put(account_id, site)
    return site


def get_or_create_site(
    session: Session, account_id: int, url: str, max_sites: int = 0
) -> tables.Site:
    """The account's site for `url`, created on first use (safe against concurrent creation)
    if the account has fewer than `max_sites` (0: no limit), else SiteLimitReached.

    Two requests creating an account's last sites at the same moment may both get theirs:
    the limit bounds what one key can make grow, give or take a few."""
    query = select(tables.Site).where(tables.Site.account_id == account_id, tables.Site.url == url)
    site = session.execute(query).scalar_one_or_none()
    if site is not None:
        return site
    if max_sites:
        count = session.execute(
            select(func.count())
            .select_from(tables.Site)
            .where(tables.Site.account_id == account_id)
        ).scalar_one()
        if count >= max_sites:
            raise SiteLimitReached(account_id, max_sites)
    site = tables.Site(account_id=account_id, url=url, callback_secret=secrets.token_hex(32))
    try:
        with session.begin_nested():
            session.add(site)
    except IntegrityError:
        return session.execute(query).scalar_one()
    return site
