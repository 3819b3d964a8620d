"""The runtime descriptor ``ya-runtime-gramine-sgx.json`` and ``runtime install``.

ya-provider reads every ``ya-runtime-*.json`` in its plugins folder (``~/.local/lib/yagna/plugins``
for golemsp, ``/usr/lib/yagna/plugins`` for a system install): a JSON list of ``ExeUnitDesc``
objects with kebab-case fields ``name``, ``version`` (semver), ``description``,
``supervisor-path``, ``runtime-path``, ``extra-args``, ``properties`` and ``config.counters``
(research/golem.md section 2.6). Relative paths resolve against the descriptor's folder. When
``config`` is present ya-provider does not add its default counters, so the descriptor lists
``golem.usage.duration_sec`` and ``golem.usage.cpu_sec`` beside ours.

The descriptor in ``packaging/ya-runtime-gramine-sgx.json`` is :func:`descriptor` with its
defaults; ``golem-graphene runtime install --plugins-dir DIR`` writes it with a wrapper script
that runs this installation's runtime with the provider's settings baked in.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from golem_graphene._internal.files import write_atomic
from golem_graphene.errors import UsageError
from golem_graphene.runtime.settings import (
    COUNTER_ENCLAVE_SECONDS,
    RUNTIME_NAME,
    RUNTIME_VERSION,
    RuntimeSettings,
)

__all__ = ["DESCRIPTOR_FILE", "RUNTIME_PATH", "descriptor", "install", "wrapper_script"]

DESCRIPTOR_FILE = f"ya-runtime-{RUNTIME_NAME}.json"
RUNTIME_PATH = f"ya-runtime-{RUNTIME_NAME}/ya-runtime-{RUNTIME_NAME}"
"""Where the wrapper goes, relative to the plugins folder (as Golem's own runtimes are laid out)."""


def descriptor(
    *, runtime_path: str = RUNTIME_PATH, supervisor_path: str = "exe-unit"
) -> list[dict[str, Any]]:
    """The descriptor: one ExeUnit named ``gramine-sgx``, supervised by the stock ``exe-unit``."""
    return [
        {
            "name": RUNTIME_NAME,
            "version": RUNTIME_VERSION,
            "supervisor-path": supervisor_path,
            "runtime-path": runtime_path,
            "description": (
                "golem-graphene: confidential tasks in Intel SGX enclaves under Gramine, "
                "attested (DCAP) and sealed end to end"
            ),
            "extra-args": [],
            "properties": {},
            "config": {
                "counters": {
                    "golem.usage.duration_sec": {
                        "name": "duration",
                        "description": "Duration",
                        "price": True,
                    },
                    "golem.usage.cpu_sec": {"name": "cpu", "description": "CPU", "price": True},
                    COUNTER_ENCLAVE_SECONDS: {
                        "name": "enclave-seconds",
                        "description": "Wall-clock seconds the activity's SGX enclaves ran",
                        "price": True,
                    },
                }
            },
        }
    ]


def wrapper_script(settings: RuntimeSettings, python: str | None = None) -> str:
    """A POSIX shell script that runs this installation's runtime with ``settings``."""
    argv = [python or sys.executable, "-m", "golem_graphene.runtime"]
    argv += ["--runner", settings.runner, "--data-dir", str(settings.data_dir)]
    if settings.pcs_url:
        argv += ["--pcs-url", settings.pcs_url]
    for name in settings.allow_insecure:
        argv += ["--allow-insecure", name]
    if settings.allow_network:
        argv.append("--allow-network")
    return (
        "#!/bin/sh\n"
        "# The gramine-sgx ExeUnit runtime of golem-graphene (written by "
        "`golem-graphene runtime install`).\n"
        f'exec {" ".join(shlex.quote(a) for a in argv)} "$@"\n'
    )


def install(
    plugins_dir: Path,
    settings: RuntimeSettings,
    *,
    supervisor_path: str = "exe-unit",
    python: str | None = None,
    force: bool = False,
) -> tuple[Path, Path]:
    """Write the descriptor and the wrapper into ``plugins_dir``; returns both paths.

    Raises UsageError, before writing anything, when either file exists with other contents
    (another installation's descriptor or a wrapper with other flags) and ``force`` is false.
    """
    wrapper = plugins_dir / RUNTIME_PATH
    target = plugins_dir / DESCRIPTOR_FILE
    files = {
        wrapper: (wrapper_script(settings, python).encode(), 0o755),
        target: (
            (json.dumps(descriptor(supervisor_path=supervisor_path), indent=2) + "\n").encode(),
            0o644,
        ),
    }
    if not force:
        for path, (data, _) in files.items():
            if path.is_symlink() or (path.exists() and _read(path) != data):
                raise UsageError(
                    f"{str(path)!r} exists with other contents (another installation or other "
                    "runtime flags); pass --force to replace it"
                )
    try:
        for path, (data, mode) in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data, mode=mode)
    except OSError as exc:
        raise UsageError(
            f"cannot write into the plugins folder {str(plugins_dir)!r}: {exc.strerror or exc}"
        ) from exc
    return target, wrapper


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
