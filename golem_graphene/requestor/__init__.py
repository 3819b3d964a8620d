"""The requestor SDK: run confidential tasks on untrusted providers and verify what comes back."""

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
