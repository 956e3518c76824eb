"""Sites: the blogs an account has sent comments for, with their callback secrets."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from service import tables
from service.api import errors
from service.api.deps import AccountId, SessionDep
from service.schemas import SiteOut

router = APIRouter(prefix="/v1", tags=["sites"])


@router.get("/sites", response_model=list[SiteOut], responses=errors.responses(401, 429, 503))
def list_sites(account_id: AccountId, session: SessionDep) -> list[SiteOut]:
    """The account's sites and the secrets that sign their callbacks."""
    rows = session.execute(
        select(tables.Site).where(tables.Site.account_id == account_id).order_by(tables.Site.id)
    ).scalars()
    return [
        SiteOut(id=s.id, url=s.url, callback_secret=s.callback_secret, created_at=s.created_at)
        for s in rows
    ]
