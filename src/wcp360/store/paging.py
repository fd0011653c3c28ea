"""One page of a listing and the total it was cut from (every paged endpoint answers both)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session as OrmSession

V = TypeVar("V")


def page(
    s: OrmSession,
    query: Select[Any],
    order_by: Any,
    limit: int,
    offset: int,
    view: Callable[[Any], V],
) -> tuple[list[V], int]:
    total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = s.scalars(query.order_by(order_by).limit(limit).offset(offset)).all()
    return [view(row) for row in rows], total
