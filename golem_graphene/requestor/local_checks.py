"""The requestor's checks of its own side, made before any provider is contacted: input files it
can read, an output folder it can create, a staging folder beside it."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from golem_graphene._internal.staging import StagingArea
from golem_graphene.errors import UsageError
from golem_graphene.protocol.spec import TaskSpec

__all__ = ["check_out_dir", "check_request", "readable_file", "staging_beside"]


def readable_file(path: Path, what: str) -> int | None:
    """The size of a file we can read (None when it is not a regular file, e.g. a pipe)."""
    try:
        # Non-blocking: opening a FIFO must not wait for a writer. A folder: EISDIR.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"cannot read {what} at {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"cannot read {what} at {str(path)!r}: Is a directory")
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def staging_beside(out: Path) -> StagingArea:
    """A private staging folder beside ``out`` (its parent created); :class:`UsageError` when
    that folder cannot be written."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return StagingArea(out.parent)
    except OSError as exc:
        raise UsageError(f"cannot write into {str(out.parent)!r}: {exc.strerror or exc}") from exc


def check_out_dir(out: Path) -> None:
    """``out`` must be absent or an empty folder (outputs arrive all together, or not)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(f"the output folder {str(out)!r} exists and is not a folder")
    if out.is_dir():
        try:
            empty = not any(out.iterdir())
        except OSError as exc:
            raise UsageError(
                f"cannot read the output folder {str(out)!r}: {exc.strerror or exc}"
            ) from exc
        if not empty:
            raise UsageError(f"the output folder {str(out)!r} is not empty")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:  # a real attempt: permission bits say nothing for root, or for /proc
        os.rmdir(tempfile.mkdtemp(prefix=".golem-graphene-probe-", dir=parent))
    except OSError as exc:
        raise UsageError(
            f"cannot create the output folder {str(out)!r}: {str(parent)!r} is not "
            f"writable ({exc.strerror or exc})"
        ) from None


def check_request(
    spec: str | Path,
    inputs: Mapping[str, str | Path],
    out_dir: str | Path,
    prestaged: Mapping[str, str | Path] | None = None,
) -> tuple[Path, TaskSpec]:
    """The spec file and the spec, once what the requestor asks for checked against its own
    machine (:meth:`~golem_graphene.requestor.client.Requestor.check_local` says what);
    raises :class:`UsageError` or :class:`~golem_graphene.errors.ConfigError`."""
    spec_path = Path(spec)
    if not spec_path.exists():
        raise UsageError(f"no task spec at {str(spec_path)!r}")
    spec_file = spec_path / "task.toml" if spec_path.is_dir() else spec_path
    parsed = TaskSpec.from_path(spec_file)
    given = {**{n: Path(p) for n, p in inputs.items()}}
    staged = {n: Path(p) for n, p in (prestaged or {}).items()}
    for name in sorted(set(given) & set(staged)):
        raise UsageError(f"input {name!r} is given both as a file and as a prestaged file")
    declared = {i.name for i in parsed.inputs}
    for name in sorted({*given, *staged} - declared):
        raise UsageError(
            f"the spec declares no input {name!r}",
            expected=", ".join(sorted(declared)) or "no inputs",
        )
    for spec_input in parsed.inputs:
        if spec_input.required and spec_input.name not in given | staged:
            raise UsageError(f"the spec requires the input {spec_input.name!r}; give it")
    for name, path in sorted(given.items()):
        size = readable_file(path, f"input {name!r}")
        limit = parsed.input(name).max_size  # type: ignore[union-attr]
        if size is not None and size > limit:
            raise UsageError(
                f"input {name!r} is larger than the spec allows",
                expected=f"<= {limit} bytes",
                found=size,
            )
    for name, path in sorted(staged.items()):
        readable_file(path, f"prestaged input {name!r}")
    check_out_dir(Path(out_dir))
    return spec_file, parsed
