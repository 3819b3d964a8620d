"""Where Gramine is installed: the ``pkglibdir`` that holds ``libsysdb.so`` and the runtimes.

The default ``loader.entrypoint`` of a manifest and the ``gramine.*`` template globals come from
here. Without Gramine (the simulator's case) a stand-in at the Debian paths is used, so
manifests render and measure the same on every machine.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from golem_graphene.errors import ManifestError

__all__ = ["DEFAULT_GRAMINE_PKGLIBDIR", "GramineInstall", "detect_gramine"]

DEFAULT_GRAMINE_PKGLIBDIR: Final = "/usr/lib/x86_64-linux-gnu/gramine"
"""Where Gramine's Debian/Ubuntu packages install ``libsysdb.so`` and ``runtime/<libc>``."""

_SOURCE_BUILD_PKGLIBDIRS: Final = (
    "/usr/local/lib/x86_64-linux-gnu/gramine",
    "/usr/lib64/gramine",
    "/usr/local/lib64/gramine",
)


@dataclass(frozen=True, slots=True)
class GramineInstall:
    """Where Gramine lives: ``pkglibdir`` holds ``libsysdb.so`` and ``runtime/<libc>/``.

    ``installed`` is false for the stand-in used when Gramine is absent (the simulator's case);
    ``source`` says how it was found: ``graminelibos``, ``gramine-manifest``, ``filesystem``,
    ``stand-in`` or ``explicit``. Callers care because ``gramine.libos`` and
    ``gramine.runtimedir()`` in templates, and the default ``loader.entrypoint``, come from here.
    """

    pkglibdir: Path
    installed: bool
    source: str

    @classmethod
    def at(cls, pkglibdir: str | os.PathLike[str]) -> GramineInstall:
        """An install at an explicit location (tests, chroots, unusual prefixes)."""
        path = Path(pkglibdir)
        if not path.is_absolute():
            raise ManifestError(
                "gramine pkglibdir must be an absolute path", expected="absolute", found=str(path)
            )
        return cls(path, (path / "libsysdb.so").is_file(), "explicit")

    @property
    def libos(self) -> Path:
        """Path of ``libsysdb.so`` (the template global ``gramine.libos``)."""
        return self.pkglibdir / "libsysdb.so"

    @property
    def libos_uri(self) -> str:
        """The default ``loader.entrypoint.uri``: ``file:`` + :attr:`libos`."""
        return f"file:{self.libos}"

    def runtimedir(self, libc: str = "glibc") -> Path:
        """The patched-libc runtime directory; ``libc`` is ``"glibc"`` or ``"musl"``.

        Raises :class:`ManifestError` for other values (Gramine documents only these two).
        """
        if libc not in ("glibc", "musl"):
            raise ManifestError(
                "gramine.runtimedir(): unsupported libc", expected="glibc or musl", found=libc
            )
        path = self.pkglibdir / "runtime" / libc
        return path.resolve() if self.installed else path


def _detect_gramine(
    *,
    import_module: Callable[[str], Any] = importlib.import_module,
    which: Callable[[str], str | None] = shutil.which,
    candidates: Sequence[str] = (DEFAULT_GRAMINE_PKGLIBDIR, *_SOURCE_BUILD_PKGLIBDIRS),
) -> GramineInstall:
    try:
        module = import_module("graminelibos")
        configured = getattr(module, "_CONFIG_PKGLIBDIR", None)
    except Exception:  # a broken system install must not break us; fall through
        configured = None
    if isinstance(configured, str) and Path(configured).is_absolute():
        return GramineInstall(Path(configured), True, "graminelibos")

    script = which("gramine-manifest")
    if script is not None:
        found = _pkglibdir_from_script(Path(script))
        if found is not None:
            return GramineInstall(found, True, "gramine-manifest")

    for candidate in candidates:
        if Path(candidate, "libsysdb.so").is_file():
            return GramineInstall(Path(candidate), True, "filesystem")
    return GramineInstall(Path(DEFAULT_GRAMINE_PKGLIBDIR), False, "stand-in")


def _pkglibdir_from_script(script: Path) -> Path | None:
    """Ask the interpreter of the ``gramine-manifest`` script where graminelibos was built for."""
    try:
        with script.open("rb") as handle:
            first = handle.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    command = os.fsdecode(first[2:]).split()
    if not command:
        return None
    probe = "import sys, graminelibos; sys.stdout.write(graminelibos._CONFIG_PKGLIBDIR)"
    try:
        result = subprocess.run(  # the interpreter named by the installed script itself
            [*command, "-c", probe], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = result.stdout.decode("utf-8", "replace").strip()
    if result.returncode != 0 or not text.startswith("/"):
        return None
    return Path(text)


_DETECTED: list[GramineInstall] = []


def detect_gramine(*, refresh: bool = False) -> GramineInstall:
    """Find the local Gramine install, or the Debian-path stand-in when there is none.

    Tries, in order: importing ``graminelibos`` (its build-time ``_CONFIG_PKGLIBDIR``), asking the
    interpreter of a ``gramine-manifest`` on ``PATH``, then the usual install directories
    (``/usr/lib/x86_64-linux-gnu/gramine`` from the Debian packages, ``/usr/local/...`` from
    source builds). The result is cached; ``refresh=True`` looks again. Never raises.
    """
    if refresh or not _DETECTED:
        _DETECTED[:] = [_detect_gramine()]
    return _DETECTED[0]
