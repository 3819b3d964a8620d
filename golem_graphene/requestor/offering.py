"""Offering a spec of one's own, with its container image, to a provider that accepts
requestors' images (``PUT /v1/specs/{name}``)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import structlog

from golem_graphene.errors import Error, ProtocolError, UsageError
from golem_graphene.protocol.spec import TaskSpec, spec_digest
from golem_graphene.requestor.channel import Channel
from golem_graphene.requestor.deadlines import Deadlines, within
from golem_graphene.requestor.outcomes import TaskStepError

__all__ = ["offer_spec"]

log = structlog.get_logger(__name__)


async def offer_spec(channel: Channel, deadlines: Deadlines, spec: str | Path) -> str:
    """:meth:`Requestor.offer <golem_graphene.requestor.client.Requestor.offer>` over
    ``channel`` within ``deadlines``; returns the spec's digest the provider confirmed."""
    try:
        put_spec = getattr(channel, "put_spec", None)
        if put_spec is None:
            raise UsageError(
                f"this channel ({type(channel).__name__}) cannot offer specs: "
                "give the provider's HTTP address"
            )
        spec_path = Path(spec)
        spec_file = spec_path / "task.toml" if spec_path.is_dir() else spec_path
        parsed = TaskSpec.from_path(spec_file)
        digest = spec_digest(spec_file)
        from golem_graphene.host.task_package import build_task_package

        with tempfile.TemporaryDirectory(prefix="golem-graphene-offer-") as folder:
            package = await asyncio.to_thread(
                build_task_package, spec_file, Path(folder) / "package.tar"
            )
            budget = deadlines.attest + deadlines.request + package.size / deadlines.min_rate
            answer = await within(
                "offer",
                budget,
                f"the provider did not take the spec {parsed.name!r}",
                put_spec(parsed.name, package.path, answer_timeout=deadlines.attest),
            )
        if not isinstance(answer, dict) or answer.get("name") != parsed.name:
            raise ProtocolError("the provider's answer to the offer is malformed")
        if answer.get("sha256") != digest:
            raise ProtocolError(
                "the provider keeps another spec under this name",
                expected=digest,
                found=str(answer.get("sha256"))[:64],
            )
    except Error as exc:
        raise TaskStepError("offer", exc) from exc
    log.info("spec offered", spec=parsed.name, sha256=digest)
    return digest
