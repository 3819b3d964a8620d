"""The requestor SDK: run confidential tasks on untrusted providers and verify what comes back.

Names resolve on first use (the HTTP client pulls in aiohttp): commands that only need the
policy, such as ``verify-quote``, do not pay for it.
"""

from typing import TYPE_CHECKING

from golem_graphene._lazy import lazy_exports

if TYPE_CHECKING:
    from golem_graphene.requestor.channel import (
        Channel,
        ChannelError,
        HttpChannel,
        ProviderWords,
        TaskRef,
    )
    from golem_graphene.requestor.client import (
        AttestedTask,
        LocalProgress,
        ProviderTaskError,
        Requestor,
        RequestorPolicy,
        TaskResult,
        TaskStepError,
    )
    from golem_graphene.requestor.deadlines import DeadlineError, Deadlines, TransferRateError
    from golem_graphene.requestor.measure import expected_mrenclave, measure_locally
    from golem_graphene.requestor.record import TaskRecord

__all__ = [
    "AttestedTask",
    "Channel",
    "ChannelError",
    "DeadlineError",
    "Deadlines",
    "HttpChannel",
    "LocalProgress",
    "ProviderTaskError",
    "ProviderWords",
    "Requestor",
    "RequestorPolicy",
    "TaskRecord",
    "TaskRef",
    "TaskResult",
    "TaskStepError",
    "TransferRateError",
    "expected_mrenclave",
    "measure_locally",
]

__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ("Channel", "ChannelError", "HttpChannel", "ProviderWords", "TaskRef"), "channel"
        ),
        **dict.fromkeys(
            (
                "AttestedTask",
                "LocalProgress",
                "ProviderTaskError",
                "Requestor",
                "RequestorPolicy",
                "TaskResult",
                "TaskStepError",
            ),
            "client",
        ),
        **dict.fromkeys(("DeadlineError", "Deadlines", "TransferRateError"), "deadlines"),
        **dict.fromkeys(("expected_mrenclave", "measure_locally"), "measure"),
        "TaskRecord": "record",
    },
)
