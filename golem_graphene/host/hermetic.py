"""Hermetic enclaves: what an enclave runs and measures, made from a container image and a spec.

Everything here is a pure function of the flattened root's :class:`RootIndex`, the image
config's runtime fields and the task spec (plus this package's agent and template), so the
requestor computes, offline, the measurement every provider's build gives (``measure``), and
no file of the provider's host is involved. Layer boundaries, compression, history and digests
do not enter: the same content packed any way measures the same.

The enclave's files (the launch folder's relative URIs, see ``native/agent.manifest.template``):

- ``rootfs/...``: every regular file of the image root, as trusted files with their SHA-256;
- ``image/agent``: the native agent (``/.golem-graphene/agent`` inside);
- ``image/workload.json``: what the agent runs (``docs/agent-protocol.md`` section 5);
- ``image/rootfs.json``: the root's index (folders, modes, symbolic links and their targets),
  measured as a trusted file so that a changed link or mode changes the measurement too.

Workload: the spec's ``entrypoint`` or else the image's Entrypoint; the spec's ``args`` or else
the image's Cmd (the arguments the requestor's sealed input manifest may replace); with no
entrypoint, Cmd's first word is the program. A program named without ``/`` is looked up in the
workload's ``PATH`` inside the root, symbolic links resolved inside the root, so the enclave
starts a file the manifest lists. Env is the image's, then the spec's on top. User (``uid``,
``uid:gid``, or names from the root's ``/etc/passwd`` and ``/etc/group``) becomes Gramine's
``loader.uid``/``loader.gid``. The workload starts in the spec's ``workdir``, else the image's
WorkingDir (a folder of the image, links resolved inside it), else ``/workspace``, the task's
own folder (``inputs/``, ``outputs/``; ``HOME``) wherever it starts.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from golem_graphene.errors import ConfigError
from golem_graphene.gramine.install import DEFAULT_GRAMINE_PKGLIBDIR, GramineInstall
from golem_graphene.gramine.manifest import Manifest, canonical_manifest_bytes
from golem_graphene.gramine.model import TrustedFile
from golem_graphene.gramine.template import render_manifest
from golem_graphene.images import ImageReference, RootEntry, RootIndex, RuntimeConfig
from golem_graphene.protocol.spec import EnclaveSpec, OutputsSpec, TaskSpec

__all__ = [
    "AGENT_BINARY",
    "IMAGE_LINK",
    "ROOTFS_LINK",
    "SIM_MRENCLAVE_TAG",
    "EnclavePlan",
    "default_spec",
    "plan_enclave",
    "resolve_reference",
    "shipped_agent",
    "sim_mrenclave",
]

SIM_MRENCLAVE_TAG = b"golem-graphene/sim/mrenclave/v1\0"
AGENT_BINARY = "golem-graphene-agent"
IMAGE_LINK = "image"
"""The launch folder's link to the enclave image folder (``/.golem-graphene`` inside)."""
ROOTFS_LINK = "rootfs"
"""The launch folder's (and image folder's) link to the flattened container root (``/``)."""
AGENT_NAME, WORKLOAD_NAME, INDEX_NAME = "agent", "workload.json", "rootfs.json"
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MAX_LINK_HOPS = 40
WORKSPACE = "/workspace"
"""The task's own folder in the enclave (a tmpfs: inputs, outputs; the workload's HOME)."""
# The manifest always names Gramine's packaged path: a source build elsewhere would otherwise
# change the sim measurement from host to host (gramine-sgx-sign needs this layout).
_GRAMINE_LAYOUT = GramineInstall(Path(DEFAULT_GRAMINE_PKGLIBDIR), False, "stand-in")


def sim_mrenclave(manifest: Manifest) -> bytes:
    """The simulated MRENCLAVE of an expanded manifest."""
    return hashlib.sha256(SIM_MRENCLAVE_TAG + canonical_manifest_bytes(manifest)).digest()


def shipped_agent() -> bytes:
    """The native agent's bytes, as this package ships them."""
    try:
        return resources.files("golem_graphene.host").joinpath("agent", AGENT_BINARY).read_bytes()
    except OSError as exc:
        raise ConfigError(
            "this installation of golem-graphene lacks its in-enclave agent "
            f"(golem_graphene/host/agent/{AGENT_BINARY}); reinstall it"
        ) from exc


def resolve_reference(reference: ImageReference, base: Path) -> ImageReference:
    """``reference`` with a relative path taken relative to ``base`` (a spec's folder)."""
    if Path(reference.path).is_absolute():
        return reference
    return replace(reference, path=str(base / reference.path))


def default_spec(reference: str) -> TaskSpec:
    """The spec an image runs under when none is given: the image config's command, no
    declared inputs, every file in ``outputs/`` an output, default limits."""
    return TaskSpec(
        name="image",
        enclave=EnclaveSpec(image=reference),
        outputs=OutputsSpec(files=("*",)),
    )


@dataclass(frozen=True, slots=True)
class EnclavePlan:
    """An enclave, ready to be written or measured: the image folder's files and the expanded
    manifest that lists them with the root's files."""

    files: dict[str, bytes]
    manifest: Manifest

    @property
    def sim_mrenclave(self) -> bytes:
        return sim_mrenclave(self.manifest)


def plan_enclave(
    spec: TaskSpec,
    runtime: RuntimeConfig,
    index: RootIndex,
    root: Path,
    *,
    log_level: str = "error",
) -> EnclavePlan:
    """The enclave of ``spec`` over the image whose root (at ``root``, indexed by ``index``) and
    config ``runtime`` are given.

    Raises :class:`ConfigError` when the image and spec give no program, or it is not a file
    of the image, or the image's User is unknown, and the manifest errors when the template
    cannot be rendered.
    """
    files = {
        AGENT_NAME: shipped_agent(),
        INDEX_NAME: index.to_bytes(),
        WORKLOAD_NAME: workload_json(spec, runtime, index),
    }
    manifest = _render(spec, log_level, user_ids(runtime.user, index, root))
    trusted = [
        TrustedFile(f"file:{IMAGE_LINK}/{name}", hashlib.sha256(files[name]).hexdigest())
        for name in sorted(files)
    ]
    trusted += [TrustedFile(f"file:{ROOTFS_LINK}/{e.path}", e.sha256) for e in index.files()]
    manifest = replace(manifest, sgx=replace(manifest.sgx, trusted_files=tuple(trusted)))
    return EnclavePlan(files, manifest)


def _render(spec: TaskSpec, log_level: str, ids: tuple[int, int]) -> Manifest:
    template = resources.files("golem_graphene.host").joinpath(
        "templates", "agent.manifest.template"
    )
    enclave = spec.enclave
    variables = {
        "enclave_size": f"{enclave.enclave_size // (1 << 20)}M",
        "max_threads": enclave.max_threads,
        "debug": enclave.debug,
        "isvprodid": enclave.isvprodid,
        "isvsvn": enclave.isvsvn,
        "log_level": log_level,
        "uid": ids[0],
        "gid": ids[1],
    }
    return render_manifest(
        template.read_text(),
        variables,
        gramine=_GRAMINE_LAYOUT,
        environ={},
        allow_subprocess=False,
        name="agent.manifest.template",
    )


def workload_json(spec: TaskSpec, runtime: RuntimeConfig, index: RootIndex) -> bytes:
    """The agent's workload description (integers only; sorted keys, so stable bytes)."""
    env = _environment(runtime.env, spec.enclave.env)
    enclave = spec.enclave
    cmd = enclave.args if enclave.args is not None else runtime.cmd
    command = list(enclave.entrypoint if enclave.entrypoint is not None else runtime.entrypoint)
    if command:
        argv, args = command, list(cmd)
    else:
        argv, args = list(cmd[:1]), list(cmd[1:])
    if not argv or not argv[0]:
        raise ConfigError(
            "the image has no Entrypoint or Cmd and the spec names no entrypoint: nothing to run"
        )
    argv[0] = _program(index, argv[0], env.get("PATH", _DEFAULT_PATH))
    limits = spec.limits
    workload = {
        "format": 1,
        "argv": argv,
        "args": args,
        "env": env,
        "workdir": _working_folder(index, enclave.workdir, runtime.working_dir),
        "inputs": [
            {"name": i.name, "max_size": i.max_size, "required": i.required} for i in spec.inputs
        ],
        "outputs": list(spec.outputs.files),
        "limits": {
            "wall_ms": round(limits.wall_seconds * 1000),
            "cpu_seconds": limits.cpu_seconds,
            "memory": limits.memory,
            "output_size": limits.output_size,
            "max_outputs": limits.max_outputs,
        },
    }
    return (json.dumps(workload, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()


def _working_folder(index: RootIndex, spec_dir: str | None, image_dir: str) -> str | None:
    """Where the workload starts: a folder of the root (links resolved), or ``None`` for the
    task's own folder (``WORKSPACE``: the spec said so, or the image names none)."""
    chosen = spec_dir if spec_dir is not None else image_dir
    if not chosen or posixpath.normpath(chosen) == WORKSPACE:
        return None
    origin = "the spec's workdir" if spec_dir is not None else "the image's WorkingDir"
    if not chosen.startswith("/") or "\0" in chosen:
        raise ConfigError(f"{origin} must be an absolute path", found=chosen[:200])
    entries = {e.path: e for e in index.entries}
    resolved = _resolve(entries, chosen)
    if resolved is not None and (resolved == "/" or entries[resolved.lstrip("/")].kind == "dir"):
        return resolved
    raise ConfigError(
        f"{origin} is not a folder of the image (the root is read-only: it cannot be made; "
        f'set [enclave] workdir, or workdir = "{WORKSPACE}" for the task\'s folder)',
        found=chosen[:200],
    )


def _environment(image_env: tuple[str, ...], spec_env: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in image_env:
        name, sep, value = item.partition("=")
        if not sep or not name or "\0" in item:
            raise ConfigError("the image config has a malformed Env entry", found=item[:80])
        env[name] = value
    env.update(spec_env)
    return env


def _program(index: RootIndex, name: str, path_env: str) -> str:
    """The absolute path, inside the root, of the program ``name`` (links resolved)."""
    candidates = (
        [name]
        if "/" in name
        else [posixpath.join(d or ".", name) for d in path_env.split(":") if d.startswith("/")]
    )
    entries = {e.path: e for e in index.entries}
    for candidate in candidates:
        if not candidate.startswith("/"):
            raise ConfigError(
                "the workload's program must be an absolute path or a name on PATH",
                found=name,
            )
        resolved = _resolve(entries, candidate)
        if resolved is not None:
            entry = entries[resolved.lstrip("/")]
            if entry.kind == "file" and entry.mode & 0o111:
                return resolved
    raise ConfigError(
        "the workload's program is not an executable file of the image",
        expected=f"a file on PATH={path_env}" if "/" not in name else "an executable file",
        found=name,
    )


def _resolve(entries: dict[str, RootEntry], path: str) -> str | None:
    """``path`` with every symbolic link resolved inside the root; ``None`` if it is missing."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        entry = entries.get("/".join([*resolved, part]))
        if entry is None:
            return None
        if entry.kind == "link" and entry.target is not None:
            hops += 1
            if hops > _MAX_LINK_HOPS:
                return None
            target = [p for p in entry.target.split("/") if p and p != "."]
            if entry.target.startswith("/"):
                resolved = []
            parts = target + parts
            continue
        resolved.append(part)
    return "/" + "/".join(resolved)


def user_ids(user: str, index: RootIndex, root: Path) -> tuple[int, int]:
    """The (uid, gid) of an image config's User: ``""`` is root; numbers are taken as they are;
    names are looked up in the root's ``/etc/passwd`` and ``/etc/group`` (files of the image,
    so measured like every other)."""
    if not user:
        return 0, 0
    name, _, group = user.partition(":")
    uid, primary = _lookup(name, "etc/passwd", index, root, gid_field=True)
    if not group:
        return uid, primary
    gid, _ = _lookup(group, "etc/group", index, root, gid_field=False)
    return uid, gid


def _lookup(
    name: str, table: str, index: RootIndex, root: Path, *, gid_field: bool
) -> tuple[int, int]:
    if name.isdigit():
        value = int(name)
        if value > 0xFFFFFFFF:
            raise ConfigError("the image's User names an id out of range", found=name)
        return value, value
    entry = {e.path: e for e in index.entries}.get(table)
    if entry is None or entry.kind != "file":
        raise ConfigError(f"the image's User names {name!r} but the image has no /{table}")
    for line in (root / table).read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name and fields[2].isdigit():
            primary = fields[3] if gid_field and fields[3].isdigit() else fields[2]
            return int(fields[2]), int(primary)
    raise ConfigError(f"the image's User {name!r} is not in its /{table}")
