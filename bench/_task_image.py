"""The container image the benchmarks' shell specs run: the ``gzip-compress`` task image (dash
and Debian's gzip, built by ``make task-images``), named by its absolute path and pinned digest.

Its Entrypoint is ``/bin/sh -c``, so a spec's ``args`` is one shell command; ``gzip -dcf`` copies
a file unchanged (``zcat -f`` behaves as ``cat``), the only copy tool the image has.
"""

from __future__ import annotations

from pathlib import Path

from golem_graphene.protocol.spec import TaskSpec

TASK_SPEC = Path(__file__).resolve().parent.parent / "task_specs" / "gzip-compress"


def shell_image() -> str:
    """``oci-archive:/abs/path/image.tar@sha256:...``; exits with a hint when it is not built."""
    archive = TASK_SPEC / "image.tar"
    if not archive.is_file():
        raise SystemExit(f"{archive} is missing: run `make task-images` first")
    digest = TaskSpec.from_path(TASK_SPEC).enclave.reference().digest
    return f"oci-archive:{archive}@{digest}"
