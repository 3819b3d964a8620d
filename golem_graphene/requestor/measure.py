"""Expected measurements: what the requestor compares the enclave's MRENCLAVE with.

A spec may pin ``[attestation] mrenclave`` per runner. Where it does not, the requestor builds
the image itself from the same spec (a reproducible build) and takes the measurement of its
own build: the provider cannot influence it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from golem_graphene.errors import UsageError
from golem_graphene.protocol.spec import TaskSpec

__all__ = ["expected_mrenclave", "measure_locally"]


def measure_locally(spec: Path, runner: str = "sim") -> str:
    """Build the spec's image in a temporary folder and return its MRENCLAVE for ``runner``."""
    from golem_graphene.host.image import build_image

    work = Path(tempfile.mkdtemp(prefix="golem-graphene-measure-"))
    try:
        image = build_image(spec, work / "image", key_path=work / "key.pem")
        value = image.measurement(runner)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if value is None:
        raise UsageError(
            f"the {runner} measurement cannot be computed on this host "
            "(gramine-sgx-sign is needed); pin it in the spec"
        )
    return value.hex()


def expected_mrenclave(spec: Path, runner: str) -> tuple[str, bool]:
    """The pinned measurement for ``runner``, or a local build's; second item: built locally."""
    spec_file = spec / "task.toml" if spec.is_dir() else spec
    pinned = TaskSpec.from_path(spec_file).attestation.mrenclave.get(runner)
    if pinned:
        return pinned, False
    return measure_locally(spec_file, runner), True
