"""Expected measurements: what the requestor compares the enclave's MRENCLAVE with.

A spec may pin ``[attestation] mrenclave`` per runner. Where it does not, the requestor
computes it from the spec and its digest-pinned container image, offline
(:func:`golem_graphene.host.measure.measure`): the same value every provider's build gives,
which the provider cannot influence.
"""

from __future__ import annotations

from pathlib import Path

from golem_graphene.errors import UsageError
from golem_graphene.protocol.spec import TaskSpec

__all__ = ["expected_mrenclave", "measure_locally"]


def measure_locally(spec: Path, runner: str = "sim") -> str:
    """The spec's MRENCLAVE under ``runner``, computed here from its image."""
    from golem_graphene.host.measure import measure

    measured = measure(spec=spec)
    value = measured.for_runner(runner)
    if value is None:
        raise UsageError(f"the {runner} measurement is not known here: {measured.reason}")
    return value


def expected_mrenclave(spec: Path, runner: str) -> tuple[str, bool]:
    """The pinned measurement for ``runner``, or the computed one; second item: computed."""
    spec_file = spec / "task.toml" if spec.is_dir() else spec
    pinned = TaskSpec.from_path(spec_file).attestation.mrenclave.get(runner)
    if pinned:
        return pinned, False
    return measure_locally(spec_file, runner), True
