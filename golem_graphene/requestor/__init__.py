"""The requestor SDK: run confidential tasks on untrusted providers and verify what comes back."""

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
