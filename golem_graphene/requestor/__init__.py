"""The requestor SDK: run confidential tasks on untrusted providers and verify what comes back.

Names resolve on first use (the HTTP client pulls in aiohttp): commands that only need the
policy, such as ``verify-quote``, do not pay for it.
"""

from typing import TYPE_CHECKING

from golem_graphene._lazy import lazy_exports

if TYPE_CHECKING:
    from golem_graphene.requestor.channel import Channel, ChannelError, HttpChannel, TaskRef
    from golem_graphene.requestor.client import (
        AttestedTask,
        Requestor,
        RequestorPolicy,
        TaskResult,
        TaskStepError,
    )
    from golem_graphene.requestor.measure import expected_mrenclave, measure_locally

__all__ = [
    "AttestedTask",
    "Channel",
    "ChannelError",
    "HttpChannel",
    "Requestor",
    "RequestorPolicy",
    "TaskRef",
    "TaskResult",
    "TaskStepError",
    "expected_mrenclave",
    "measure_locally",
]

__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(("Channel", "ChannelError", "HttpChannel", "TaskRef"), "channel"),
        **dict.fromkeys(
            ("AttestedTask", "Requestor", "RequestorPolicy", "TaskResult", "TaskStepError"),
            "client",
        ),
        **dict.fromkeys(("expected_mrenclave", "measure_locally"), "measure"),
    },
)
