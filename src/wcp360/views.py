"""The base of every typed view a service returns across a package boundary, and the page of a
listing. Views are frozen pydantic models: the API declares them as response models (so the
OpenAPI document describes every body) and the CLI renders them. Identifiers and times are kept as
the strings the API has always answered with (UUIDs, ISO 8601 with +00:00)."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Page(View, Generic[T]):
    """One page of a listing, newest first: `items`, how many there are in all, and the window."""

    items: list[T]
    total: int
    limit: int
    offset: int


class Items(View, Generic[T]):
    """A short listing returned whole (shares, API tokens, bans)."""

    items: list[T]
