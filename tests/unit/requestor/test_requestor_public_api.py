"""The requestor SDK's public names: a change to them is deliberate."""

from __future__ import annotations

import golem_graphene.requestor as requestor


def test_public_names() -> None:
    assert sorted(requestor.__all__) == [
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
    assert all(hasattr(requestor, name) for name in requestor.__all__)
