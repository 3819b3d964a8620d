"""Expected measurements of a container image under a spec, computed without running anything.

The ``sim`` MRENCLAVE is a pure function of the image's root, its config's runtime fields and
the spec (:mod:`golem_graphene.host.hermetic`), so it is computed here, offline, exactly as
every provider's build computes it. The ``gramine-sgx`` MRENCLAVE also covers Gramine's own
binaries (the loader and libOS that ``gramine-sgx-sign`` measures into the enclave), so it is
known only where Gramine is installed; providers publish their Gramine version in their offer
(``golem.runtime.sgx.libos_version``), and one version signs the same manifest to one value.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from golem_graphene.errors import ConfigError, ImageDigestError
from golem_graphene.host.hermetic import default_spec, plan_enclave, resolve_reference
from golem_graphene.host.image import build_image, default_image_store
from golem_graphene.host.user_paths import spec_file_of
from golem_graphene.images import ImageReference, ImageStore, open_image, parse_reference
from golem_graphene.protocol.spec import TaskSpec

__all__ = ["Measurement", "measure"]

NO_GRAMINE = (
    "gramine-sgx-sign is not installed here: the gramine-sgx MRENCLAVE also measures Gramine's "
    "own loader and libOS, so compute it on a host with the Gramine version the providers "
    "publish (golem.runtime.sgx.libos_version), or pin it in the spec"
)


@dataclass(frozen=True, slots=True)
class Measurement:
    """The image digest and the MRENCLAVE per runner (``None`` with a reason where unknown)."""

    image_digest: str
    sim: str
    gramine_sgx: str | None
    reason: str | None

    def to_json(self) -> dict[str, object]:
        """The ``measure --json`` object."""
        sgx: dict[str, object] = {"mrenclave": self.gramine_sgx}
        if self.reason is not None:
            sgx["reason"] = self.reason
        return {
            "image_digest": self.image_digest,
            "sim": {"mrenclave": self.sim},
            "gramine-sgx": sgx,
        }

    def for_runner(self, runner: str) -> str | None:
        return self.sim if runner == "sim" else self.gramine_sgx


def measure(
    image: str | None = None,
    *,
    spec: Path | None = None,
    store: ImageStore | None = None,
    log_level: str = "error",
) -> Measurement:
    """Measure ``image`` (a reference) under ``spec`` (a spec folder or file), or the spec's own
    image when ``image`` is None, or ``image`` under the default spec when ``spec`` is None.

    With both, the image must be the one the spec pins. Raises :class:`ConfigError` for a bad
    spec, the :class:`ImageError` family for a bad image.
    """
    if image is None and spec is None:
        raise ConfigError("name an image or a spec to measure")
    store = store or default_image_store()
    parsed_spec: TaskSpec | None = None
    spec_file: Path | None = None
    if spec is not None:
        spec_file = spec_file_of(spec)
        parsed_spec = TaskSpec.from_path(spec_file)
    reference = _reference(image, parsed_spec, spec_file)
    with open_image(reference) as source:
        if parsed_spec is not None:
            pinned = parsed_spec.enclave.reference().digest
            if pinned != source.digest:
                raise ImageDigestError(
                    "the image is not the one the spec pins", expected=pinned, found=source.digest
                )
        stored = store.root(source)
        runtime = source.runtime
        digest = source.digest
    effective = parsed_spec or default_spec(f"{reference.transport}:x@{digest}")
    plan = plan_enclave(effective, runtime, stored.index(), stored.path, log_level=log_level)
    sgx, reason = _gramine_sgx(spec_file, store, log_level)
    return Measurement(digest, plan.sim_mrenclave.hex(), sgx, reason)


def _reference(image: str | None, spec: TaskSpec | None, spec_file: Path | None) -> ImageReference:
    if image is not None:
        return parse_reference(image)
    assert spec is not None and spec_file is not None
    return resolve_reference(spec.enclave.reference(), spec_file.parent)


def _gramine_sgx(
    spec_file: Path | None, store: ImageStore, log_level: str
) -> tuple[str | None, str | None]:
    """Sign a throw-away build with gramine-sgx-sign (MRENCLAVE does not depend on the key)."""
    if shutil.which("gramine-sgx-sign") is None:
        return None, NO_GRAMINE
    if spec_file is None:
        return None, "the gramine-sgx MRENCLAVE is computed for a spec: pass --spec"
    with tempfile.TemporaryDirectory(prefix="golem-graphene-measure-") as work:
        built = build_image(
            spec_file,
            Path(work) / "image",
            key_path=Path(work) / "key.pem",
            store=store,
            log_level=log_level,
            reuse=False,  # a throw-away key: nothing to reuse later
        )
        value = built.measurement("gramine-sgx")
    return (value.hex(), None) if value else (None, "gramine-sgx-sign gave no measurement")
