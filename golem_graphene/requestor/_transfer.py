"""What the requestor's uploads and downloads take from its session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from golem_graphene.requestor.channel import Channel
from golem_graphene.requestor.deadlines import Deadlines, RateGuard
from golem_graphene.sealing.keys import X25519Identity

__all__ = ["Transfers"]


@dataclass(frozen=True)
class Transfers:
    """A session's transfers: over ``channel``, for the requestor ``identity``, within
    ``deadlines``.

    Each transfer's :class:`RateGuard` is noted in ``moving`` under its task id while it runs,
    so that ``arrived`` (given a task id) can say what had arrived when a deadline passes.
    """

    channel: Channel
    identity: X25519Identity
    deadlines: Deadlines
    moving: dict[str, RateGuard]
    arrived: Callable[[str], str]
