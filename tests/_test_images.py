"""Container images for the tests: a shell and a few tools of this host, packed as an OCI
archive (``oci-archive:``), the way a spec names its image.

The tools are copied with the libraries ``ldd`` names (links dereferenced), so the image runs
under the sim runner with its root as ``/`` and nothing of the host visible. The image content
depends on this host's files, which is fine for tests: reproducibility across hosts is tested
with the task images built from Debian packages (tests/integration/test_task_images.py).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from functools import cache
from pathlib import Path

from _image_builder import write_oci_layout

SHELL_TOOLS = (
    "/bin/sh",
    "/usr/bin/cat",
    "/usr/bin/cp",
    "/usr/bin/mv",
    "/usr/bin/touch",
    "/usr/bin/chmod",
    "/usr/bin/seq",
    "/usr/bin/tee",
    "/usr/bin/stat",
    "/usr/bin/id",
    "/usr/bin/echo",
    "/usr/bin/test",
    "/usr/bin/truncate",
    "/usr/bin/base64",
    "/usr/bin/head",
    "/usr/bin/ln",
    "/usr/bin/mkfifo",
    "/usr/bin/mknod",
    "/usr/bin/mkdir",
    "/usr/bin/sleep",
    "/usr/bin/gzip",
    "/usr/bin/printf",
    "/usr/bin/wc",
    "/usr/bin/yes",
    "/usr/bin/dd",
    "/usr/bin/ls",
    "/usr/bin/rm",
    "/usr/bin/tr",
    "/usr/bin/env",
    "/usr/bin/sha256sum",
    "/usr/bin/true",
    "/usr/bin/false",
)
"""What the shell tests' scripts use (``sh -c ...`` with the requestor's args)."""


def libraries(paths: list[str]) -> list[str]:
    """The shared libraries (and the loader) that ``ldd`` names for the given programs."""
    found: set[str] = set()
    for path in paths:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                found.add(parts[2])
            elif parts and parts[0].startswith("/"):
                found.add(parts[0])
    return sorted(found)


def _layer(paths: list[str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folders: set[str] = set()
        for path in sorted(set(paths)):
            name = path.lstrip("/")
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folder = "/".join(parts[:i])
                if folder not in folders:
                    folders.add(folder)
                    info = tarfile.TarInfo(folder)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            data = Path(path).read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pack_oci_archive(layout: Path, archive: Path) -> None:
    """Tar an OCI layout folder into an ``oci-archive`` file."""
    with tarfile.open(archive, "w") as tar:
        for folder, dirs, files in os.walk(layout):
            dirs.sort()
            for name in sorted(files):
                full = Path(folder) / name
                tar.add(full, arcname=str(full.relative_to(layout)))


@cache
def _shell_layer(tools: tuple[str, ...]) -> bytes:
    present = [t for t in tools if Path(t).exists()]
    return _layer(present + libraries(present))


def shell_image(
    folder: Path,
    *,
    tools: tuple[str, ...] = SHELL_TOOLS,
    extra: dict[str, bytes] | None = None,
    name: str = "shell.tar",
    config: dict[str, object] | None = None,
) -> str:
    """Write the shell image as ``folder/name``; returns its spec reference
    (``oci-archive:NAME@sha256:...``, relative to ``folder``). ``extra`` adds files (path ->
    bytes, executable) in a second layer, ``config`` replaces fields of the image config
    (``{"WorkingDir": "/app"}``)."""
    layers = [_shell_layer(tools)]
    if extra:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path, data in sorted(extra.items()):
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size = len(data)
                info.mode = 0o755
                tar.addfile(info, io.BytesIO(data))
        layers.append(buffer.getvalue())
    layout = folder / f".{name}.layout"
    built = write_oci_layout(
        layout,
        layers,
        compression="none",
        tag=None,
        runtime={
            "Entrypoint": ["/bin/sh"],
            "Cmd": ["-c", "true"],
            "Env": ["PATH=/usr/bin:/bin"],
            **(config or {}),
        },
    )
    pack_oci_archive(layout, folder / name)
    shutil.rmtree(layout)
    return f"oci-archive:{name}@{built.digest}"


def write_shell_spec(folder: Path, text: str) -> Path:
    """Write a spec folder: the shell image beside ``task.toml``, whose text names it where
    it says ``{image}`` (the only format field, so other braces need no escaping)."""
    folder.mkdir(parents=True, exist_ok=True)
    reference = shell_image(folder)
    (folder / "task.toml").write_text(text.replace("{image}", reference))
    return folder
