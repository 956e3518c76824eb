"""The comment record: the one shape every part of commentguard passes around."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class Comment:
    """A comment as a platform submits it, with the Akismet protocol's fields.

    Every field but `content` is optional; `extra` keeps anything else the platform sent.
    """

    content: str
    author: str = ""
    author_email: str = ""
    author_url: str = ""
    user_ip: str = ""
    user_agent: str = ""
    referrer: str = ""
    permalink: str = ""
    comment_type: str = ""
    created_at: datetime | None = None
    blog: str = ""
    blog_lang: str = ""
    user_role: str = ""
    honeypot: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # A stable key of the site the comment was posted on (the service uses the site's database
    # id): a model trained with per-site features reads it; "" is no site in particular.
    site: str = ""

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Comment:
        """Build a comment from a dict, keeping unknown keys in `extra`."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = dict(data.get("extra") or {})
        for key, value in data.items():
            if key == "extra":
                continue
            if key in known:
                kwargs[key] = value
            else:
                extra[key] = value
        for key in known - {"content", "created_at", "extra"}:
            if kwargs.get(key) is None:
                kwargs.pop(key, None)
            elif not isinstance(kwargs[key], str):
                kwargs[key] = str(kwargs[key])
        created = kwargs.get("created_at")
        if isinstance(created, str):
            kwargs["created_at"] = _parse_datetime(created)
        kwargs["content"] = str(kwargs.get("content") or "")
        return cls(extra=extra, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the record."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data


def _parse_datetime(value: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
