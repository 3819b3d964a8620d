"""Gramine manifests: parse, validate, normalise and serialise.

A Gramine manifest is a TOML document that tells the library OS what to run (``libos.entrypoint``,
``loader.argv``, ``loader.env``), what the application may see (``fs.mounts``,
``sgx.trusted_files``, ``sgx.allowed_files``) and how the enclave is built (``sgx.enclave_size``,
``sgx.max_threads``, ``sgx.debug``, ``sgx.isvprodid``/``sgx.isvsvn``). Both runners read it: the
real ``gramine-sgx`` runner hands it to Gramine, the simulator enforces it itself and measures it
with :func:`canonical_manifest_bytes`. That is why the parser here is strict and complete: a
manifest the simulator accepts must be one Gramine accepts, with the same defaults.

Sources (facts copied, not code): Gramine ``Documentation/manifest-syntax.rst`` (v1.4..HEAD),
``python/graminelibos/manifest.py`` (defaults filled by ``gramine-manifest``/``gramine-sgx-sign``,
trusted-file entry forms), ``python/graminelibos/manifest_check.py`` (the schema that
``gramine-manifest --check`` and ``gramine-manifest-check`` apply), ``common/src/string/atoi.c``
``parse_size_str`` (size strings), ``pal/src/host/linux-sgx/host_main.c`` (power-of-two enclave
size) and the PAL's "mutually exclusive" argv error. See ``research/gramine.md`` sections 0 and 1.

Rules and defaults implemented (all errors name the key and the rule):

* ``libos.entrypoint`` is required (a non-empty string; relative paths are allowed, Gramine
  resolves them from ``fs.start_dir``). ``libos.check_invalid_pointers`` defaults to true.
* ``loader.entrypoint`` is the table ``{ uri = "file:...", sha256 = "<hex>" }`` (Gramine >= 1.8);
  the string form ``"file:..."`` of Gramine <= 1.7 is accepted with a warning and normalised to the
  table. When absent it defaults to ``file:<pkglibdir>/libsysdb.so`` of the Gramine install
  (:func:`detect_gramine`), as ``graminelibos.Manifest`` does.
* ``loader.argv`` (array of strings), ``loader.argv_src_file`` and
  ``loader.insecure__use_cmdline_argv`` are mutually exclusive (the PAL refuses the combination);
  with none of them the application gets ``argv = [libos.entrypoint]``.
* ``loader.env.NAME`` is ``"value"``, ``{ value = "..." }`` or ``{ passthrough = true }``; a table
  with both keys, neither key, ``passthrough = false`` or another key is an error.
  ``loader.env_src_file``, ``loader.insecure__use_host_env``, ``loader.insecure__disable_aslr``,
  ``loader.log_file``, ``loader.uid``/``loader.gid`` (default 0, non-negative) are parsed;
  ``loader.log_level`` is one of none/error/warning/debug/trace/all (default ``error``).
* ``fs.mounts`` is an array of tables: ``type`` chroot (default) | encrypted | tmpfs |
  untrusted_shm; ``path`` required and absolute; ``uri`` required except for tmpfs (where Gramine
  ignores it, so it is dropped), ``file:`` for chroot/encrypted, ``dev:`` for untrusted_shm;
  ``key_name`` (default ``"default"``; names starting with ``_`` must be ``_sgx_mrenclave`` or
  ``_sgx_mrsigner``) and ``enable_recovery`` only for encrypted mounts; encrypted paths are at most
  512 bytes. ``fs.root`` takes the same keys minus ``path``; ``fs.start_dir`` is a string;
  ``fs.insecure__keys.NAME`` are 32 hex digits.
* ``sys.stack.size`` and ``sys.brk.max_size`` are size strings (default ``"256K"``),
  ``sys.fds.limit`` an integer (default 900), the boolean switches default to false;
  ``sys.allowed_ioctls`` entries need an integer ``request_code`` and may name a ``struct`` that
  must exist in ``sys.ioctl_structs``; ``sys.debug__mock_syscalls`` entries need a ``name``.
* Sizes follow Gramine's ``parse_size_str``: a TOML *string* of decimal digits with an optional
  K/M/G suffix (either case), 1024-based, no sign, no spaces, no overflow of 64 bits. A bare TOML
  integer is refused, as Gramine refuses it.
* ``sgx.enclave_size`` must be a power of two; its default is ``"256M"``, or ``"1024G"`` when
  ``sgx.edmm_enable`` is true. ``sgx.max_threads`` defaults to 4 (``sgx.thread_num`` is its
  pre-v1.4 name: accepted with a warning, an error if both are present). ``sgx.debug``,
  ``sgx.edmm_enable``, ``sgx.preheat_enclave`` (invalid together with EDMM), ``sgx.enable_stats``
  (needs ``sgx.debug``), ``sgx.use_exinfo`` and the other switches default to false.
  ``sgx.isvprodid``/``sgx.isvsvn`` are 0..65535 (default 0).
* ``sgx.remote_attestation`` is none (default) | dcap | epid; epid (removed in Gramine v1.9) gets a
  warning and needs ``sgx.ra_client_spid`` (32 hex digits). The v1.0-v1.2 boolean form is
  accepted with a warning: false is none, true is epid with a non-empty SPID and dcap otherwise.
* ``sgx.trusted_files`` entries are ``"file:..."`` strings or ``{ uri, sha256 }`` tables (other
  keys are errors); only ``file:`` URIs; ``sha256`` is 64 hex digits (normalised to lower case);
  a directory entry ends with ``/`` and cannot carry a hash; one URI with two different hashes is an
  error. ``sgx.allowed_files`` are ``file:`` or ``dev:`` URIs. The pre-1.0 table forms of both
  are refused. ``sgx.file_check_policy`` is strict (default) | allow_all_but_log.
* ``sgx.cpu_features.{avx,avx512,amx}`` are unspecified (default) | disabled | required,
  ``{mpx,pkru}`` disabled (default) | required; the ``sgx.require_*`` booleans deprecated in v1.6
  (and ``sgx.require_exinfo``) are accepted with a warning and mapped. ``sgx.seal_key`` masks are
  hex strings with the documented defaults.

Unknown keys. Gramine's PAL ignores keys it does not read, but ``gramine-manifest`` checks the
rendered manifest against its schema and, since v1.8, refuses unknown keys (v1.7 only warned), as
does ``gramine-manifest-check``. We follow the tools: an unknown key is an error, so a misspelled
option (``sgx.enclave_sise``) never silently falls back to a default. Removed options get a
specific message (the ``sgx.protected_*`` family, removed in v1.5; pre-1.0 Graphene keys such as
``loader.preload``). Options only older Gramine read (``sgx.nonpie_binary``) are warnings.

Types are strict: a boolean must be a TOML boolean, an integer a TOML integer (not a float, not a
string), every string free of NUL characters (Gramine reads them as C strings).

The canonical form (:meth:`Manifest.to_dict`, :func:`canonical_manifest_bytes`) is the manifest
with every documented default written out, legacy spellings replaced by current ones, sizes as
normalised size strings and trusted files as ``{uri, sha256}`` tables, in the array order the
author chose (order is meaningful for mounts and is part of the measured text in real Gramine).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias, cast, get_args

from golem_graphene.errors import ManifestError
from golem_graphene.limits import MAX_MANIFEST_BYTES, MAX_MANIFEST_NESTING

__all__ = [
    "CANONICAL_FORMAT_VERSION",
    "DEFAULT_BRK_MAX_SIZE",
    "DEFAULT_ENCLAVE_SIZE_NO_EDMM",
    "DEFAULT_ENCLAVE_SIZE_WITH_EDMM",
    "DEFAULT_FDS_LIMIT",
    "DEFAULT_GRAMINE_PKGLIBDIR",
    "DEFAULT_MAX_THREADS",
    "DEFAULT_STACK_SIZE",
    "AllowedIoctl",
    "CpuFeatures",
    "EnvVar",
    "FsConfig",
    "FsRoot",
    "GramineInstall",
    "LibosConfig",
    "LoaderConfig",
    "LoaderEntrypoint",
    "Manifest",
    "ManifestCheck",
    "ManifestProblem",
    "ManifestSyntaxError",
    "ManifestValidationError",
    "MockSyscall",
    "Mount",
    "SealKeyMasks",
    "SgxConfig",
    "SgxProfile",
    "SysConfig",
    "TrustedFile",
    "canonical_manifest_bytes",
    "check_manifest",
    "decode_serialized_strings",
    "detect_gramine",
    "format_size",
    "parse_size",
]

# --- constants (Gramine's documented defaults) ---------------------------------------------------

DEFAULT_ENCLAVE_SIZE_NO_EDMM: Final = "256M"
DEFAULT_ENCLAVE_SIZE_WITH_EDMM: Final = "1024G"
DEFAULT_MAX_THREADS: Final = 4
DEFAULT_STACK_SIZE: Final = "256K"
DEFAULT_BRK_MAX_SIZE: Final = "256K"
DEFAULT_FDS_LIMIT: Final = 900
DEFAULT_SEAL_FLAGS_MASK: Final = 0xFFFF_FFFF_FFFF_FFFF
DEFAULT_SEAL_XFRM_MASK: Final = 0xFFFF_FFFF_FFF9_FF1B
DEFAULT_SEAL_MISC_MASK: Final = 0xFFFF_FFFF

DEFAULT_GRAMINE_PKGLIBDIR: Final = "/usr/lib/x86_64-linux-gnu/gramine"
"""Where Gramine's Debian/Ubuntu packages install ``libsysdb.so`` and ``runtime/<libc>``."""

CANONICAL_FORMAT_VERSION: Final = 1
"""Bumped whenever :meth:`Manifest.to_dict` changes; callers put it into their domain tags."""

_SOURCE_BUILD_PKGLIBDIRS: Final = (
    "/usr/local/lib/x86_64-linux-gnu/gramine",
    "/usr/lib64/gramine",
    "/usr/local/lib64/gramine",
)

LogLevel: TypeAlias = Literal["none", "error", "warning", "debug", "trace", "all"]
MountType: TypeAlias = Literal["chroot", "encrypted", "tmpfs", "untrusted_shm"]
RemoteAttestation: TypeAlias = Literal["none", "epid", "dcap"]
FileCheckPolicy: TypeAlias = Literal["strict", "allow_all_but_log"]
CpuFeature: TypeAlias = Literal["unspecified", "disabled", "required"]
CpuFeatureStrict: TypeAlias = Literal["disabled", "required"]
Severity: TypeAlias = Literal["error", "warning"]

_LOG_LEVELS: Final = get_args(LogLevel)
_MOUNT_TYPES: Final = get_args(MountType)
_REMOTE_ATTESTATION: Final = get_args(RemoteAttestation)
_FILE_CHECK_POLICIES: Final = get_args(FileCheckPolicy)
_CPU_FEATURE: Final = get_args(CpuFeature)
_CPU_FEATURE_STRICT: Final = get_args(CpuFeatureStrict)
_PROFILE_ENABLE: Final = ("none", "main", "all")
_PROFILE_MODE: Final = ("aex", "ocall_inner", "ocall_outer")
_SPECIAL_KEY_NAMES: Final = ("_sgx_mrenclave", "_sgx_mrsigner")
_MAX_ENCRYPTED_PATH_BYTES: Final = 512
_U16_MAX: Final = 0xFFFF
_U32_MAX: Final = 0xFFFF_FFFF
_U64_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF
_SIZE_RE: Final = re.compile(r"([0-9]+)([KMGkmg]?)")
_HEX_RE: Final = re.compile(r"[0-9a-fA-F]+")
_BARE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")

# Keys that Gramine removed: the message says what to use instead.
_REMOVED_KEYS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "loader.preload": "Graphene (pre-1.0) key, removed; the LibOS is loader.entrypoint",
        "loader.exec": "Graphene (pre-1.0) key, removed; use libos.entrypoint",
        "loader.execname": "Graphene (pre-1.0) key, removed; use loader.argv",
        "loader.debug_type": "Graphene (pre-1.0) key, removed; use loader.log_level",
        "loader.argv0_override": "removed from Gramine; put argv[0] into loader.argv",
        "fs.mount": "legacy fs.mount.<name> tables were removed; use the fs.mounts array",
        "sgx.protected_files": "removed in Gramine v1.5; use an fs.mounts entry of type encrypted",
        "sgx.protected_mrenclave_files": "removed in Gramine v1.5; use an encrypted mount "
        'with key_name = "_sgx_mrenclave"',
        "sgx.protected_mrsigner_files": "removed in Gramine v1.5; use an encrypted mount "
        'with key_name = "_sgx_mrsigner"',
        "sgx.insecure__protected_files_key": "removed in Gramine v1.5; use fs.insecure__keys",
    }
)

_REQUIRE_CPU_KEYS: Final = ("avx", "avx512", "amx", "mpx", "pkru")


# --- problems and errors --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestProblem:
    """One finding about a manifest: the key it concerns and the rule it breaks.

    ``severity`` is ``"error"`` (Gramine or its tools would refuse the manifest) or ``"warning"``
    (accepted, but legacy or deprecated). ``key`` is a dotted path with array indexes, e.g.
    ``fs.mounts[2].path``; ``<toml>`` for syntax errors and ``<manifest>`` for the whole text.
    """

    key: str
    rule: str
    severity: Severity = "error"
    expected: str | None = None
    found: str | None = None

    def describe(self) -> str:
        """``key: rule``, followed by what was expected and found when known."""
        text = f"{self.key}: {self.rule}"
        if self.expected is not None or self.found is not None:
            text += f" (expected {self.expected}, found {self.found})"
        return text

    def to_dict(self) -> dict[str, str | None]:
        """The JSON form used by ``golem-graphene manifest check --json``."""
        return {
            "key": self.key,
            "rule": self.rule,
            "severity": self.severity,
            "expected": self.expected,
            "found": self.found,
        }


class ManifestValidationError(ManifestError):
    """A manifest breaks one or more rules; ``problems`` lists them all (errors first).

    The message, ``key``, ``rule``, ``expected`` and ``found`` describe the first error, e.g.
    ``sgx.enclave_size: must be a power of two: expected power of two, found 300M``.
    """

    def __init__(self, problems: Sequence[ManifestProblem]) -> None:
        ordered = sorted(problems, key=lambda p: p.severity != "error")
        if not ordered:
            ordered = [ManifestProblem("<manifest>", "invalid manifest")]
        first = ordered[0]
        self.problems: tuple[ManifestProblem, ...] = tuple(ordered)
        self.key = first.key
        self.rule = first.rule
        super().__init__(f"{first.key}: {first.rule}", expected=first.expected, found=first.found)


class ManifestSyntaxError(ManifestValidationError):
    """The text is not a TOML document (or not UTF-8, or too large)."""


@dataclass(frozen=True, slots=True)
class ManifestCheck:
    """The outcome of :func:`check_manifest`: every problem, and the manifest when it is valid."""

    problems: tuple[ManifestProblem, ...]
    manifest: Manifest | None

    @property
    def ok(self) -> bool:
        """True when no problem is an error (warnings do not fail a check)."""
        return not self.errors

    @property
    def errors(self) -> tuple[ManifestProblem, ...]:
        """The problems of severity ``error``."""
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[ManifestProblem, ...]:
        """The problems of severity ``warning``."""
        return tuple(p for p in self.problems if p.severity == "warning")


# --- sizes ----------------------------------------------------------------------------------------


def parse_size(text: str, *, key: str = "size") -> int:
    """Parse a Gramine size string (``"512M"``, ``"1G"``, ``"256K"``, ``"4096"``) into bytes.

    Follows Gramine's ``parse_size_str``: decimal digits, an optional K/M/G suffix in either case
    (powers of 1024), nothing else. Raises :class:`ManifestValidationError` naming ``key``.
    """
    match = _SIZE_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ManifestValidationError(
            [
                ManifestProblem(
                    key,
                    "must be a size: digits with an optional K, M or G suffix",
                    expected='a string such as "512M"',
                    found=_found(text),
                )
            ]
        )
    digits, unit = match.groups()
    value = int(digits) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit.lower()]
    if value > _U64_MAX:
        raise ManifestValidationError(
            [ManifestProblem(key, "size overflows 64 bits", expected="< 2^64 bytes", found=text)]
        )
    return value


def format_size(size: int) -> str:
    """The shortest exact Gramine size string for ``size`` bytes (``268435456`` -> ``"256M"``)."""
    if size < 0:
        raise ManifestValidationError(
            [ManifestProblem("size", "must not be negative", found=str(size))]
        )
    for suffix, unit in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


# --- Gramine install ------------------------------------------------------------------------------


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


# --- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoaderEntrypoint:
    """``loader.entrypoint``: the LibOS binary (``file:`` URI) and, once measured, its SHA-256."""

    uri: str
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One ``loader.env.NAME`` entry: a fixed ``value``, or ``passthrough`` from the host."""

    name: str
    value: str | None = None
    passthrough: bool = False


@dataclass(frozen=True, slots=True)
class LoaderConfig:
    """The ``loader.*`` keys (LibOS, logging, argv, environment, emulated ids)."""

    entrypoint: LoaderEntrypoint
    log_level: LogLevel = "error"
    log_file: str | None = None
    argv: tuple[str, ...] | None = None
    argv_src_file: str | None = None
    insecure__use_cmdline_argv: bool = False
    env: tuple[EnvVar, ...] = ()
    env_src_file: str | None = None
    insecure__use_host_env: bool = False
    insecure__disable_aslr: bool = False
    uid: int = 0
    gid: int = 0

    def env_var(self, name: str) -> EnvVar | None:
        """The ``loader.env`` entry called ``name``, if any."""
        return next((var for var in self.env if var.name == name), None)


@dataclass(frozen=True, slots=True)
class LibosConfig:
    """The ``libos.*`` keys."""

    entrypoint: str
    check_invalid_pointers: bool = True


@dataclass(frozen=True, slots=True)
class FsRoot:
    """``fs.root``: what Gramine mounts at ``/`` (by default the current working directory)."""

    type: MountType = "chroot"
    uri: str | None = None
    key_name: str | None = None
    enable_recovery: bool = False


@dataclass(frozen=True, slots=True)
class Mount:
    """One ``fs.mounts`` entry. ``uri`` is None only for tmpfs; ``key_name`` only for encrypted."""

    path: str
    type: MountType = "chroot"
    uri: str | None = None
    key_name: str | None = None
    enable_recovery: bool = False


@dataclass(frozen=True, slots=True)
class FsConfig:
    """The ``fs.*`` keys. ``insecure__keys`` are (name, 32-hex-digit key) pairs sorted by name."""

    mounts: tuple[Mount, ...] = ()
    root: FsRoot | None = None
    start_dir: str | None = None
    insecure__keys: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AllowedIoctl:
    """One ``sys.allowed_ioctls`` entry."""

    request_code: int
    struct: str | None = None


@dataclass(frozen=True, slots=True)
class MockSyscall:
    """One ``sys.debug__mock_syscalls`` entry (``return`` in TOML)."""

    name: str
    return_value: int | None = None


@dataclass(frozen=True, slots=True)
class SysConfig:
    """The ``sys.*`` keys; sizes in bytes. ``ioctl_structs`` is kept as read (read-only view)."""

    stack_size: int = 256 * 1024
    brk_max_size: int = 256 * 1024
    fds_limit: int = DEFAULT_FDS_LIMIT
    insecure__allow_eventfd: bool = False
    enable_sigterm_injection: bool = False
    disallow_subprocesses: bool = False
    enable_extra_runtime_domain_names_conf: bool = False
    experimental__enable_flock: bool = False
    allowed_ioctls: tuple[AllowedIoctl, ...] = ()
    ioctl_structs: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    debug__mock_syscalls: tuple[MockSyscall, ...] = ()


@dataclass(frozen=True, slots=True)
class TrustedFile:
    """One ``sgx.trusted_files`` entry; ``sha256`` is None until the file is measured."""

    uri: str
    sha256: str | None = None

    @property
    def is_directory(self) -> bool:
        """True for a directory entry (URI ending in ``/``), which expansion replaces."""
        return self.uri.endswith("/")


@dataclass(frozen=True, slots=True)
class CpuFeatures:
    """``sgx.cpu_features.*``."""

    avx: CpuFeature = "unspecified"
    avx512: CpuFeature = "unspecified"
    amx: CpuFeature = "unspecified"
    mpx: CpuFeatureStrict = "disabled"
    pkru: CpuFeatureStrict = "disabled"


@dataclass(frozen=True, slots=True)
class SealKeyMasks:
    """``sgx.seal_key.*`` masks of the SGX KEYREQUEST, as integers."""

    flags_mask: int = DEFAULT_SEAL_FLAGS_MASK
    xfrm_mask: int = DEFAULT_SEAL_XFRM_MASK
    misc_mask: int = DEFAULT_SEAL_MISC_MASK


@dataclass(frozen=True, slots=True)
class SgxProfile:
    """``sgx.profile.*`` (debug enclaves only); None fields were not set."""

    enable: str | None = None
    mode: str | None = None
    with_stack: bool | None = None
    frequency: int | None = None


@dataclass(frozen=True, slots=True)
class SgxConfig:
    """The ``sgx.*`` keys with Gramine's defaults; ``enclave_size`` in bytes."""

    debug: bool = False
    edmm_enable: bool = False
    enclave_size: int = 256 * 1024 * 1024
    max_threads: int = DEFAULT_MAX_THREADS
    isvprodid: int = 0
    isvsvn: int = 0
    remote_attestation: RemoteAttestation = "none"
    ra_client_spid: str | None = None
    ra_client_linkable: bool | None = None
    trusted_files: tuple[TrustedFile, ...] = ()
    allowed_files: tuple[str, ...] = ()
    file_check_policy: FileCheckPolicy = "strict"
    preheat_enclave: bool = False
    enable_stats: bool = False
    use_exinfo: bool = False
    insecure__allow_memfaults_without_exinfo: bool = False
    insecure__rpc_thread_num: int = 0
    cpu_features: CpuFeatures = CpuFeatures()
    seal_key: SealKeyMasks = SealKeyMasks()
    profile: SgxProfile | None = None
    vtune_profile: bool = False
    trusted_files_cache_size: int | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed, validated Gramine manifest with every default filled in.

    Build one with :meth:`from_toml` or :meth:`from_path` (or the template renderer); the
    constructor does not validate. ``warnings`` keeps the non-fatal findings (legacy spellings,
    EPID) and is not compared. Two manifests with equal :meth:`to_dict` describe the same enclave.
    """

    libos: LibosConfig
    loader: LoaderConfig
    fs: FsConfig = FsConfig()
    sys: SysConfig = SysConfig()
    sgx: SgxConfig = SgxConfig()
    warnings: tuple[ManifestProblem, ...] = field(default=(), compare=False)

    # -- constructors --

    @classmethod
    def from_toml(cls, text: str, *, gramine: GramineInstall | None = None) -> Manifest:
        """Parse and validate manifest TOML text.

        ``gramine`` supplies the default ``loader.entrypoint`` (default: :func:`detect_gramine`).
        Raises :class:`ManifestSyntaxError` for text that is not TOML and
        :class:`ManifestValidationError` (with every problem) for a manifest that breaks a rule.
        """
        data = _loads(text)
        manifest, problems = _build(data, gramine)
        if manifest is None:
            raise ManifestValidationError(problems)
        return manifest

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], *, gramine: GramineInstall | None = None
    ) -> Manifest:
        """Read a manifest file (at most ``MAX_MANIFEST_BYTES``) and parse it like
        :meth:`from_toml`. An unreadable file raises :class:`ManifestError`."""
        return cls.from_toml(_read_text(path), gramine=gramine)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, gramine: GramineInstall | None = None
    ) -> Manifest:
        """Validate an already-decoded TOML document (as ``tomllib`` returns it)."""
        manifest, problems = _build(data, gramine)
        if manifest is None:
            raise ManifestValidationError(problems)
        return manifest

    # -- views --

    @property
    def is_expanded(self) -> bool:
        """True when every trusted file is a single file with a SHA-256 (ready to measure)."""
        return all(tf.sha256 is not None and not tf.is_directory for tf in self.sgx.trusted_files)

    def insecure_options(self) -> tuple[str, ...]:
        """The settings Gramine lists in its "insecure configuration" banner at start-up.

        Empty for a production-grade manifest. Source: ``libos/src/utils/warn.c``.
        """
        found: list[str] = []
        if self.sgx.debug:
            found.append("sgx.debug = true")
        if self.loader.log_level in ("warning", "debug", "trace", "all"):
            found.append(f'loader.log_level = "{self.loader.log_level}"')
        for name in ("insecure__use_cmdline_argv", "insecure__use_host_env"):
            if getattr(self.loader, name):
                found.append(f"loader.{name} = true")
        if self.loader.insecure__disable_aslr:
            found.append("loader.insecure__disable_aslr = true")
        if self.sys.insecure__allow_eventfd:
            found.append("sys.insecure__allow_eventfd = true")
        if self.sys.experimental__enable_flock:
            found.append("sys.experimental__enable_flock = true")
        if self.sgx.insecure__allow_memfaults_without_exinfo:
            found.append("sgx.insecure__allow_memfaults_without_exinfo = true")
        if self.sgx.file_check_policy == "allow_all_but_log":
            found.append('sgx.file_check_policy = "allow_all_but_log"')
        if self.sgx.allowed_files:
            found.append("sgx.allowed_files = [ ... ]")
        for name, _ in self.fs.insecure__keys:
            found.append(f'fs.insecure__keys.{_key_segment(name)} = "..."')
        return tuple(found)

    def effective_argv(
        self, cmdline: Sequence[str] | None = None, *, argv_src_data: bytes | None = None
    ) -> tuple[str, ...]:
        """The argv the application gets, as Gramine computes it.

        ``loader.argv`` if set; the decoded ``argv_src_data`` when ``loader.argv_src_file`` is set
        (the caller reads and verifies that file); the host ``cmdline`` only under
        ``loader.insecure__use_cmdline_argv``; otherwise ``[libos.entrypoint]``.
        Raises :class:`ManifestError` when ``loader.argv_src_file`` is set but no data is given.
        """
        if self.loader.argv is not None:
            return self.loader.argv
        if self.loader.argv_src_file is not None:
            if argv_src_data is None:
                raise ManifestError(
                    "loader.argv_src_file: the file's contents are needed to compute argv",
                    expected="argv_src_data",
                    found="None",
                )
            return decode_serialized_strings(argv_src_data, key="loader.argv_src_file")
        if self.loader.insecure__use_cmdline_argv and cmdline is not None:
            return tuple(cmdline)
        return (self.libos.entrypoint,)

    def effective_env(
        self, host_env: Mapping[str, str] | None = None, *, env_src_data: bytes | None = None
    ) -> dict[str, str]:
        """The environment the application gets, as Gramine computes it.

        The host environment only under ``loader.insecure__use_host_env``; then the variables of
        ``env_src_data`` (the contents of ``loader.env_src_file``, read by the caller); then
        ``loader.env`` (which wins): fixed values, and passthrough variables present in
        ``host_env``. Raises :class:`ManifestError` when ``loader.env_src_file`` is set but no data
        is given, or the data is malformed.
        """
        host = dict(host_env or {})
        result: dict[str, str] = dict(host) if self.loader.insecure__use_host_env else {}
        if self.loader.env_src_file is not None:
            if env_src_data is None:
                raise ManifestError(
                    "loader.env_src_file: the file's contents are needed to compute the env",
                    expected="env_src_data",
                    found="None",
                )
            for item in decode_serialized_strings(env_src_data, key="loader.env_src_file"):
                name, sep, value = item.partition("=")
                if not sep or not name:
                    raise ManifestError(
                        "loader.env_src_file: every entry must be NAME=VALUE",
                        expected="NAME=VALUE",
                        found=_found(item),
                    )
                result[name] = value
        for var in self.loader.env:
            if var.passthrough:
                if var.name in host:
                    result[var.name] = host[var.name]
            elif var.value is not None:
                result[var.name] = var.value
        return result

    # -- serialisation --

    def to_dict(self) -> dict[str, Any]:
        """The canonical expanded form: every documented default written out, current key names,
        normalised sizes and entry forms. The TOML and JSON outputs are both made from it."""
        return {
            "fs": _fs_to_dict(self.fs),
            "libos": {
                "check_invalid_pointers": self.libos.check_invalid_pointers,
                "entrypoint": self.libos.entrypoint,
            },
            "loader": _loader_to_dict(self.loader),
            "sgx": _sgx_to_dict(self.sgx),
            "sys": _sys_to_dict(self.sys),
        }

    def to_toml(self) -> str:
        """The canonical form as a TOML manifest (keys sorted) that Gramine >= 1.8 reads and
        :meth:`from_toml` parses back into an equal manifest."""
        return _toml_dumps(self.to_dict())

    def canonical_json(self) -> str:
        """:meth:`to_dict` as compact JSON, keys sorted (see :func:`canonical_manifest_bytes`)."""
        return json.dumps(
            self.to_dict(),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )


def canonical_manifest_bytes(manifest: Manifest) -> bytes:
    """The bytes that identify a manifest: UTF-8 of :meth:`Manifest.canonical_json`.

    Stable for a given ``CANONICAL_FORMAT_VERSION``: JSON with keys sorted at every level, no
    whitespace, non-ASCII kept as UTF-8, arrays in manifest order. The simulator computes its
    MRENCLAVE as SHA-256(domain tag || these bytes), so the manifest must be expanded: a trusted
    file without a hash or a directory entry raises :class:`ManifestError` (measuring it would not
    bind the files' contents).
    """
    for index, tf in enumerate(manifest.sgx.trusted_files):
        if tf.is_directory or tf.sha256 is None:
            raise ManifestError(
                f"sgx.trusted_files[{index}]: the manifest must be expanded before it is measured",
                expected="a file URI with sha256",
                found=tf.uri,
            )
    return manifest.canonical_json().encode("utf-8")


def check_manifest(
    source: str | os.PathLike[str], *, gramine: GramineInstall | None = None
) -> ManifestCheck:
    """Check a manifest and report every problem instead of stopping at the first.

    ``source`` is TOML text (``str``) or a path (``os.PathLike``, e.g. :class:`pathlib.Path`).
    Returns a :class:`ManifestCheck` whose ``manifest`` is set when there is no error. A file
    that cannot be read raises :class:`ManifestError`; bad contents (not UTF-8, too large, not
    TOML, invalid) never raise.
    """
    try:
        text = source if isinstance(source, str) else _read_text(source)
        data = _loads(text)
    except ManifestSyntaxError as exc:
        return ManifestCheck(exc.problems, None)
    manifest, problems = _build(data, gramine)
    return ManifestCheck(tuple(sorted(problems, key=lambda p: p.severity != "error")), manifest)


def decode_serialized_strings(data: bytes, *, key: str = "loader.argv_src_file") -> tuple[str, ...]:
    """Decode the output of ``gramine-argv-serializer``: NUL-terminated strings, concatenated.

    Used for ``loader.argv_src_file`` and ``loader.env_src_file``. Bytes that are not UTF-8 are
    kept with ``os.fsdecode`` semantics. Raises :class:`ManifestError` when the last string is not
    NUL-terminated.
    """
    if not data:
        return ()
    if not data.endswith(b"\0"):
        raise ManifestError(
            f"{key}: serialized strings must each end with a NUL byte",
            expected="NUL-terminated strings",
            found="unterminated data",
        )
    return tuple(os.fsdecode(part) for part in data[:-1].split(b"\0"))


# --- reading --------------------------------------------------------------------------------------


def _read_text(path: str | os.PathLike[str]) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(
            f"cannot read manifest {os.fspath(path)!s}: {exc.strerror or exc}"
        ) from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestSyntaxError(
            [
                ManifestProblem(
                    "<manifest>",
                    "manifest is too large",
                    expected=f"at most {MAX_MANIFEST_BYTES} bytes",
                    found=f"more than {MAX_MANIFEST_BYTES} bytes",
                )
            ]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestSyntaxError(
            [
                ManifestProblem(
                    "<toml>",
                    f"a manifest must be UTF-8 (invalid byte at offset {exc.start})",
                    expected="UTF-8",
                    found="invalid UTF-8",
                )
            ]
        ) from exc


def _loads(text: str) -> dict[str, Any]:
    try:
        size = len(text.encode("utf-8")) if len(text) <= MAX_MANIFEST_BYTES else len(text)
    except UnicodeEncodeError as exc:
        raise ManifestSyntaxError(
            [ManifestProblem("<toml>", "text contains lone surrogates, so it is not Unicode")]
        ) from exc
    if size > MAX_MANIFEST_BYTES:
        raise ManifestSyntaxError(
            [
                ManifestProblem(
                    "<manifest>",
                    "manifest is too large",
                    expected=f"at most {MAX_MANIFEST_BYTES} bytes",
                    found=f"{len(text)} characters",
                )
            ]
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestSyntaxError(
            [ManifestProblem("<toml>", f"not a valid TOML document: {exc}")]
        ) from exc
    except RecursionError as exc:
        raise ManifestSyntaxError(
            [ManifestProblem("<toml>", "not a valid TOML document: nested too deeply")]
        ) from exc
    except (ValueError, UnicodeError) as exc:  # e.g. lone surrogates in the text
        raise ManifestSyntaxError(
            [ManifestProblem("<toml>", f"not a valid TOML document: {exc}")]
        ) from exc


# --- validation machinery -------------------------------------------------------------------------

_MISSING: Final = object()


def _found(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if len(value) <= 80 else value[:77] + "..."
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return f"array of {len(value)}"
    if isinstance(value, dict):
        return "table"
    return f"{type(value).__name__} {str(value)[:60]}"


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, float):
        return "float"
    return type(value).__name__


def _key_segment(name: str) -> str:
    return name if _BARE_KEY_RE.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _join(prefix: str, name: str) -> str:
    segment = _key_segment(name)
    return f"{prefix}.{segment}" if prefix else segment


class _Ctx:
    """Collects problems while the builders walk the document."""

    def __init__(self) -> None:
        self.problems: list[ManifestProblem] = []

    def error(
        self, key: str, rule: str, *, expected: str | None = None, found: object = _MISSING
    ) -> None:
        self.problems.append(
            ManifestProblem(
                key, rule, "error", expected, None if found is _MISSING else _found(found)
            )
        )

    def warn(self, key: str, rule: str) -> None:
        self.problems.append(ManifestProblem(key, rule, "warning"))

    def wrong_type(self, key: str, expected: str, value: object) -> None:
        self.error(key, f"must be {expected}", expected=expected, found=_type_name(value))

    @property
    def failed(self) -> bool:
        return any(p.severity == "error" for p in self.problems)


class _Table:
    """A TOML table being read: typed getters that record problems, then an unknown-key check."""

    def __init__(self, ctx: _Ctx, data: Mapping[str, Any], prefix: str) -> None:
        self.ctx = ctx
        self.data = data
        self.prefix = prefix
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return _join(self.prefix, name)

    def has(self, name: str) -> bool:
        return name in self.data

    def take(self, name: str) -> object:
        self.seen.add(name)
        return self.data.get(name, _MISSING)

    def get_bool(self, name: str, default: bool) -> bool:
        value = self.take(name)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.ctx.wrong_type(self.key(name), "a boolean", value)
            return default
        return value

    def get_int(
        self, name: str, default: int, *, lo: int | None = None, hi: int | None = None
    ) -> int:
        value = self.take(name)
        if value is _MISSING:
            return default
        return self._check_int(self.key(name), value, default, lo=lo, hi=hi)

    def _check_int(
        self, key: str, value: object, default: int, *, lo: int | None, hi: int | None
    ) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.ctx.wrong_type(key, "an integer", value)
            return default
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if hi is None:
                rule, expected = f"must be at least {lo}", f">= {lo}"
            elif lo is None:
                rule, expected = f"must be at most {hi}", f"<= {hi}"
            else:
                rule, expected = f"must be an integer from {lo} to {hi}", f"{lo}..{hi}"
            self.ctx.error(key, rule, expected=expected, found=value)
            return default
        return value

    def get_opt_int(self, name: str, *, lo: int | None = None, hi: int | None = None) -> int | None:
        value = self.take(name)
        if value is _MISSING:
            return None
        return self._check_int(self.key(name), value, 0, lo=lo, hi=hi)

    def get_str(self, name: str, *, nonempty: bool = False) -> str | None:
        value = self.take(name)
        if value is _MISSING:
            return None
        return _check_str(self.ctx, self.key(name), value, nonempty=nonempty)

    def get_enum(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.take(name)
        if value is _MISSING:
            return default
        key = self.key(name)
        if not isinstance(value, str):
            self.ctx.wrong_type(key, "a string", value)
            return default
        if value not in choices:
            self.ctx.error(
                key,
                f"must be one of {', '.join(choices)}",
                expected=" | ".join(choices),
                found=value,
            )
            return default
        return value

    def get_size(self, name: str, default: int) -> int:
        value = self.take(name)
        if value is _MISSING:
            return default
        return _check_size(self.ctx, self.key(name), value, default)

    def get_opt_size(self, name: str) -> int | None:
        value = self.take(name)
        if value is _MISSING:
            return None
        return _check_size(self.ctx, self.key(name), value, 0)

    def get_table(self, name: str) -> _Table | None:
        value = self.take(name)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            self.ctx.wrong_type(self.key(name), "a table", value)
            return None
        return _Table(self.ctx, value, self.key(name))

    def get_list(self, name: str) -> list[Any] | None:
        value = self.take(name)
        if value is _MISSING:
            return None
        if not isinstance(value, list):
            self.ctx.wrong_type(self.key(name), "an array", value)
            return None
        return value

    def finish(self, warn_only: Mapping[str, str] | None = None) -> None:
        """Report every key nobody read: removed keys, legacy keys (warnings), unknown keys."""
        for name in self.data:
            if name in self.seen:
                continue
            key = self.key(name)
            if warn_only and name in warn_only:
                self.ctx.warn(key, warn_only[name])
            elif key in _REMOVED_KEYS:
                self.ctx.error(key, _REMOVED_KEYS[key])
            else:
                self.ctx.error(
                    key,
                    "unknown key: Gramine's manifest schema does not define it (misspelled?)",
                )


def _check_str(ctx: _Ctx, key: str, value: object, *, nonempty: bool = False) -> str | None:
    if not isinstance(value, str):
        ctx.wrong_type(key, "a string", value)
        return None
    if "\0" in value:
        ctx.error(key, "must not contain NUL characters", found=value.replace("\0", "\\0"))
        return None
    if nonempty and not value:
        ctx.error(key, "must not be empty", expected="a non-empty string", found='""')
        return None
    return value


def _check_size(ctx: _Ctx, key: str, value: object, default: int) -> int:
    if not isinstance(value, str):
        ctx.error(
            key,
            "must be a size string (Gramine does not accept a bare TOML number)",
            expected='a string such as "512M"',
            found=_type_name(value) + " " + _found(value),
        )
        return default
    try:
        return parse_size(value, key=key)
    except ManifestValidationError as exc:
        ctx.problems.extend(exc.problems)
        return default


def _check_uri(
    ctx: _Ctx, key: str, value: object, schemes: tuple[str, ...] = ("file:",)
) -> str | None:
    text = _check_str(ctx, key, value)
    if text is None:
        return None
    if not text.startswith(schemes):
        ctx.error(
            key,
            f"unsupported URI type: must start with {' or '.join(schemes)}",
            expected=" or ".join(f"{s}<path>" for s in schemes),
            found=text,
        )
        return None
    scheme = next(s for s in schemes if text.startswith(s))
    if len(text) == len(scheme):
        ctx.error(key, "URI has an empty path", expected=f"{scheme}<path>", found=text)
        return None
    return text


def _check_hex(ctx: _Ctx, key: str, value: object, *, digits: int, what: str) -> str | None:
    text = _check_str(ctx, key, value)
    if text is None:
        return None
    if len(text) != digits or not _HEX_RE.fullmatch(text):
        ctx.error(
            key,
            f"must be {what}: exactly {digits} hex digits",
            expected=f"{digits} hex digits",
            found=text,
        )
        return None
    return text.lower()


def _check_mask(ctx: _Ctx, key: str, value: object, *, bits: int) -> int | None:
    text = _check_str(ctx, key, value)
    if text is None:
        return None
    body = text[2:] if text[:2] in ("0x", "0X") else text
    if not body or len(body) > bits // 4 or not _HEX_RE.fullmatch(body):
        ctx.error(
            key,
            f"must be a {bits // 8}-byte hex value",
            expected=f'"0x" + at most {bits // 4} hex digits',
            found=text,
        )
        return None
    return int(body, 16)


def _check_plain_data(ctx: _Ctx, key: str, value: object, depth: int = 0) -> object:
    """Freeze free-form data (``sys.ioctl_structs``): str, int, bool, arrays and tables only."""
    if depth > MAX_MANIFEST_NESTING:
        ctx.error(key, "nested too deeply", expected=f"at most {MAX_MANIFEST_NESTING} levels")
        return None
    if isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return _check_str(ctx, key, value)
    if isinstance(value, list):
        return tuple(
            _check_plain_data(ctx, f"{key}[{i}]", item, depth + 1) for i, item in enumerate(value)
        )
    if isinstance(value, dict):
        return MappingProxyType(
            {
                name: _check_plain_data(ctx, _join(key, name), item, depth + 1)
                for name, item in value.items()
            }
        )
    ctx.error(
        key,
        "only strings, integers, booleans, arrays and tables are allowed here",
        found=_type_name(value),
    )
    return None


# --- builders -------------------------------------------------------------------------------------


def _build(
    data: Mapping[str, Any], gramine: GramineInstall | None
) -> tuple[Manifest | None, list[ManifestProblem]]:
    ctx = _Ctx()
    root = _Table(ctx, data, "")
    libos = _build_libos(ctx, root)
    loader = _build_loader(ctx, root, gramine)
    fs = _build_fs(ctx, root)
    sys_config = _build_sys(ctx, root)
    sgx = _build_sgx(ctx, root)
    root.finish()
    if loader is not None:
        _cross_checks(ctx, loader, sgx)
    if ctx.failed or libos is None or loader is None:
        return None, ctx.problems
    warnings = tuple(ctx.problems)
    return Manifest(libos, loader, fs, sys_config, sgx, warnings), ctx.problems


def _build_libos(ctx: _Ctx, root: _Table) -> LibosConfig | None:
    table = root.get_table("libos")
    if table is None:
        if not root.has("libos") or isinstance(root.data.get("libos"), dict):
            ctx.error("libos.entrypoint", "is required", expected="a path inside Gramine")
        return None
    entrypoint: str | None = None
    if not table.has("entrypoint"):
        table.take("entrypoint")
        ctx.error("libos.entrypoint", "is required", expected="a path inside Gramine")
    else:
        entrypoint = table.get_str("entrypoint", nonempty=True)
    check = table.get_bool("check_invalid_pointers", True)
    table.finish()
    return None if entrypoint is None else LibosConfig(entrypoint, check)


def _build_loader(ctx: _Ctx, root: _Table, gramine: GramineInstall | None) -> LoaderConfig | None:
    table = root.get_table("loader")
    if table is None:
        if root.has("loader"):
            return None
        table = _Table(ctx, {}, "loader")

    entry = _build_loader_entrypoint(ctx, table, gramine)
    log_level = cast(LogLevel, table.get_enum("log_level", _LOG_LEVELS, "error"))
    log_file = table.get_str("log_file", nonempty=True)

    argv: tuple[str, ...] | None = None
    raw_argv = table.get_list("argv")
    if raw_argv is not None:
        items = [_check_str(ctx, f"loader.argv[{i}]", item) for i, item in enumerate(raw_argv)]
        if all(item is not None for item in items):
            argv = tuple(cast(list[str], items))
    raw_src = table.take("argv_src_file")
    argv_src_file = (
        None if raw_src is _MISSING else _check_uri(ctx, "loader.argv_src_file", raw_src)
    )
    use_cmdline = table.get_bool("insecure__use_cmdline_argv", False)
    chosen = [
        name
        for name, present in (
            ("loader.argv", table.has("argv")),
            ("loader.argv_src_file", table.has("argv_src_file")),
            ("loader.insecure__use_cmdline_argv", use_cmdline),
        )
        if present
    ]
    if len(chosen) > 1:
        ctx.error(
            chosen[1],
            "loader.argv, loader.argv_src_file and loader.insecure__use_cmdline_argv are "
            "mutually exclusive",
            expected="at most one of them",
            found=", ".join(chosen),
        )

    env = _build_env(ctx, table)
    raw_env_src = table.take("env_src_file")
    env_src_file = (
        None if raw_env_src is _MISSING else _check_uri(ctx, "loader.env_src_file", raw_env_src)
    )
    use_host_env = table.get_bool("insecure__use_host_env", False)
    disable_aslr = table.get_bool("insecure__disable_aslr", False)
    uid = table.get_int("uid", 0, lo=0, hi=_U32_MAX)
    gid = table.get_int("gid", 0, lo=0, hi=_U32_MAX)
    table.finish()
    if entry is None:
        return None
    return LoaderConfig(
        entrypoint=entry,
        log_level=log_level,
        log_file=log_file,
        argv=argv,
        argv_src_file=argv_src_file,
        insecure__use_cmdline_argv=use_cmdline,
        env=env,
        env_src_file=env_src_file,
        insecure__use_host_env=use_host_env,
        insecure__disable_aslr=disable_aslr,
        uid=uid,
        gid=gid,
    )


def _build_loader_entrypoint(
    ctx: _Ctx, table: _Table, gramine: GramineInstall | None
) -> LoaderEntrypoint | None:
    value = table.take("entrypoint")
    if value is _MISSING:
        return LoaderEntrypoint((gramine or detect_gramine()).libos_uri)
    if isinstance(value, str):
        ctx.warn(
            "loader.entrypoint",
            "the string form is Gramine <= 1.7 syntax; since v1.8 it is loader.entrypoint.uri "
            "(and it can be omitted)",
        )
        uri = _check_uri(ctx, "loader.entrypoint", value)
        return None if uri is None else LoaderEntrypoint(uri)
    if not isinstance(value, dict):
        ctx.wrong_type("loader.entrypoint", "a table { uri, sha256 }", value)
        return None
    sub = _Table(ctx, value, "loader.entrypoint")
    raw_uri = sub.take("uri")
    uri = (
        LoaderEntrypoint((gramine or detect_gramine()).libos_uri).uri
        if raw_uri is _MISSING
        else _check_uri(ctx, "loader.entrypoint.uri", raw_uri)
    )
    sha = sub.take("sha256")
    sha256 = (
        None
        if sha is _MISSING
        else _check_hex(ctx, "loader.entrypoint.sha256", sha, digits=64, what="a SHA-256")
    )
    sub.finish()
    if uri is None or (sha is not _MISSING and sha256 is None):
        return None
    return LoaderEntrypoint(uri, sha256)


def _build_env(ctx: _Ctx, loader: _Table) -> tuple[EnvVar, ...]:
    table = loader.get_table("env")
    if table is None:
        return ()
    result: list[EnvVar] = []
    for name in sorted(table.data):
        value = table.take(name)
        key = table.key(name)
        if not name or "=" in name or "\0" in name:
            ctx.error(
                key, "environment variable names must be non-empty and contain no '='", found=name
            )
            continue
        if isinstance(value, str):
            text = _check_str(ctx, key, value)
            if text is not None:
                result.append(EnvVar(name, text))
            continue
        if not isinstance(value, dict):
            ctx.wrong_type(key, 'a string, { value = "..." } or { passthrough = true }', value)
            continue
        entry = _Table(ctx, value, key)
        has_value, has_pass = entry.has("value"), entry.has("passthrough")
        raw_value, raw_pass = entry.take("value"), entry.take("passthrough")
        entry.finish()
        if has_value and has_pass:
            ctx.error(
                key,
                "must not specify both value and passthrough",
                expected="value or passthrough",
                found="both",
            )
        elif not has_value and not has_pass:
            ctx.error(
                key,
                "must specify a value or passthrough = true",
                expected="value or passthrough",
                found="neither",
            )
        elif has_value:
            text = _check_str(ctx, _join(key, "value"), raw_value)
            if text is not None:
                result.append(EnvVar(name, text))
        elif raw_pass is True:
            result.append(EnvVar(name, None, passthrough=True))
        elif raw_pass is False:
            ctx.error(
                _join(key, "passthrough"),
                "passthrough = false is prohibited (Gramine refuses deny lists)",
                expected="true",
                found=False,
            )
        else:
            ctx.wrong_type(_join(key, "passthrough"), "the boolean true", raw_pass)
    return tuple(result)


def _build_mount_like(
    ctx: _Ctx, value: object, key: str, *, with_path: bool
) -> Mount | FsRoot | None:
    if not isinstance(value, dict):
        ctx.wrong_type(key, "a table { type, path, uri }", value)
        return None
    table = _Table(ctx, value, key)
    before = len(ctx.problems)
    mount_type = cast(MountType, table.get_enum("type", _MOUNT_TYPES, "chroot"))
    ok = len(ctx.problems) == before

    path: str | None = None
    if with_path:
        if not table.has("path"):
            table.take("path")
            ctx.error(table.key("path"), "is required", expected="an absolute path")
            ok = False
        else:
            path = table.get_str("path", nonempty=True)
            if path is None:
                ok = False
            elif not path.startswith("/"):
                ctx.error(
                    table.key("path"),
                    "must be an absolute path (start with '/')",
                    expected="an absolute path",
                    found=path,
                )
                ok = False
            elif mount_type == "encrypted" and len(path.encode()) > _MAX_ENCRYPTED_PATH_BYTES:
                ctx.error(
                    table.key("path"),
                    "encrypted-file paths are limited to 512 bytes",
                    expected="<= 512 bytes",
                    found=f"{len(path.encode())} bytes",
                )
                ok = False

    uri: str | None = None
    raw_uri = table.take("uri")
    if mount_type == "tmpfs":
        if raw_uri is not _MISSING and _check_str(ctx, table.key("uri"), raw_uri) is None:
            ok = False  # Gramine ignores the URI of a tmpfs mount, but it must still be a string
    elif raw_uri is _MISSING:
        ctx.error(table.key("uri"), f"is required for a {mount_type} mount", expected="a URI")
        ok = False
    else:
        scheme = ("dev:",) if mount_type == "untrusted_shm" else ("file:",)
        uri = _check_uri(ctx, table.key("uri"), raw_uri, scheme)
        ok = ok and uri is not None

    key_name: str | None = None
    enable_recovery = False
    if mount_type == "encrypted":
        key_name = table.get_str("key_name", nonempty=True) if table.has("key_name") else "default"
        if key_name is None:
            ok = False
        elif key_name.startswith("_") and key_name not in _SPECIAL_KEY_NAMES:
            ctx.error(
                table.key("key_name"),
                "key names starting with '_' are reserved for Gramine's special keys",
                expected=" or ".join(_SPECIAL_KEY_NAMES),
                found=key_name,
            )
            ok = False
        enable_recovery = table.get_bool("enable_recovery", False)
    else:
        for name in ("key_name", "enable_recovery"):
            if table.has(name):
                table.take(name)
                ctx.error(
                    table.key(name),
                    "is only valid for encrypted mounts",
                    expected='type = "encrypted"',
                    found=mount_type,
                )
                ok = False
    table.finish()
    if not ok:
        return None
    if with_path:
        assert path is not None
        return Mount(path, mount_type, uri, key_name, enable_recovery)
    return FsRoot(mount_type, uri, key_name, enable_recovery)


def _build_fs(ctx: _Ctx, root: _Table) -> FsConfig:
    table = root.get_table("fs")
    if table is None:
        if not root.has("fs"):
            ctx.warn("fs.mounts", "no mounts: gramine-manifest's schema check requires fs.mounts")
        return FsConfig()
    mounts: list[Mount] = []
    raw_mounts = table.get_list("mounts")
    if raw_mounts is None and not table.has("mounts"):
        ctx.warn("fs.mounts", "no mounts: gramine-manifest's schema check requires fs.mounts")
    for index, item in enumerate(raw_mounts or ()):
        mount = _build_mount_like(ctx, item, f"fs.mounts[{index}]", with_path=True)
        if isinstance(mount, Mount):
            mounts.append(mount)

    fs_root: FsRoot | None = None
    if table.has("root"):
        built = _build_mount_like(ctx, table.take("root"), "fs.root", with_path=False)
        fs_root = built if isinstance(built, FsRoot) else None
    start_dir = table.get_str("start_dir", nonempty=True)

    keys: list[tuple[str, str]] = []
    key_table = table.get_table("insecure__keys")
    if key_table is not None:
        for name in sorted(key_table.data):
            value = key_table.take(name)
            hex_key = _check_hex(ctx, key_table.key(name), value, digits=32, what="a 16-byte key")
            if hex_key is not None:
                keys.append((name, hex_key))
    table.finish()
    return FsConfig(tuple(mounts), fs_root, start_dir, tuple(keys))


def _build_sys(ctx: _Ctx, root: _Table) -> SysConfig:
    table = root.get_table("sys")
    if table is None:
        return SysConfig()
    stack = table.get_table("stack")
    stack_size = stack.get_size("size", 256 * 1024) if stack else 256 * 1024
    if stack:
        stack.finish()
    brk = table.get_table("brk")
    brk_max = brk.get_size("max_size", 256 * 1024) if brk else 256 * 1024
    if brk:
        brk.finish()
    fds = table.get_table("fds")
    fds_limit = fds.get_int("limit", DEFAULT_FDS_LIMIT, lo=0) if fds else DEFAULT_FDS_LIMIT
    if fds:
        fds.finish()

    structs: Mapping[str, object] = MappingProxyType({})
    struct_table = table.get_table("ioctl_structs")
    if struct_table is not None:
        frozen = _check_plain_data(ctx, "sys.ioctl_structs", dict(struct_table.data))
        structs = frozen if isinstance(frozen, MappingProxyType) else MappingProxyType({})

    ioctls: list[AllowedIoctl] = []
    for index, item in enumerate(table.get_list("allowed_ioctls") or ()):
        key = f"sys.allowed_ioctls[{index}]"
        if not isinstance(item, dict):
            ctx.wrong_type(key, "a table { request_code, struct }", item)
            continue
        entry = _Table(ctx, item, key)
        if not entry.has("request_code"):
            entry.take("request_code")
            ctx.error(entry.key("request_code"), "is required", expected="an integer")
            code = None
        else:
            code = entry.get_opt_int("request_code", lo=0, hi=_U64_MAX)
        struct = entry.get_str("struct", nonempty=True)
        entry.finish()
        if struct is not None and struct not in structs:
            ctx.error(
                entry.key("struct"),
                "names no table in sys.ioctl_structs",
                expected="a key of sys.ioctl_structs",
                found=struct,
            )
            continue
        if code is not None and not (entry.has("struct") and struct is None):
            ioctls.append(AllowedIoctl(code, struct))

    mocks: list[MockSyscall] = []
    for index, item in enumerate(table.get_list("debug__mock_syscalls") or ()):
        key = f"sys.debug__mock_syscalls[{index}]"
        if not isinstance(item, dict):
            ctx.wrong_type(key, "a table { name, return }", item)
            continue
        entry = _Table(ctx, item, key)
        if not entry.has("name"):
            entry.take("name")
            ctx.error(entry.key("name"), "is required", expected="a syscall name")
            name = None
        else:
            name = entry.get_str("name", nonempty=True)
        ret = entry.get_opt_int("return", lo=-(1 << 63), hi=(1 << 63) - 1)
        entry.finish()
        if name is not None:
            mocks.append(MockSyscall(name, ret))

    config = SysConfig(
        stack_size=stack_size,
        brk_max_size=brk_max,
        fds_limit=fds_limit,
        insecure__allow_eventfd=table.get_bool("insecure__allow_eventfd", False),
        enable_sigterm_injection=table.get_bool("enable_sigterm_injection", False),
        disallow_subprocesses=table.get_bool("disallow_subprocesses", False),
        enable_extra_runtime_domain_names_conf=table.get_bool(
            "enable_extra_runtime_domain_names_conf", False
        ),
        experimental__enable_flock=table.get_bool("experimental__enable_flock", False),
        allowed_ioctls=tuple(ioctls),
        ioctl_structs=structs,
        debug__mock_syscalls=tuple(mocks),
    )
    table.finish()
    return config


def _build_sgx(ctx: _Ctx, root: _Table) -> SgxConfig:
    table = root.get_table("sgx")
    if table is None:
        table = _Table(ctx, {}, "sgx")
    debug = table.get_bool("debug", False)
    edmm = table.get_bool("edmm_enable", False)

    default_size = parse_size(
        DEFAULT_ENCLAVE_SIZE_WITH_EDMM if edmm else DEFAULT_ENCLAVE_SIZE_NO_EDMM
    )
    enclave_size = table.get_size("enclave_size", default_size)
    if table.has("enclave_size") and (enclave_size == 0 or enclave_size & (enclave_size - 1)):
        ctx.error(
            "sgx.enclave_size",
            "must be a power of two",
            expected="power of two",
            found=table.data["enclave_size"],
        )

    max_threads = table.get_int("max_threads", DEFAULT_MAX_THREADS, lo=1, hi=_U32_MAX)
    if table.has("thread_num"):
        if table.has("max_threads"):
            table.take("thread_num")
            ctx.error(
                "sgx.thread_num",
                "conflicts with sgx.max_threads (its pre-v1.4 name)",
                expected="only sgx.max_threads",
                found="both",
            )
        else:
            ctx.warn("sgx.thread_num", "renamed to sgx.max_threads in Gramine v1.4")
            max_threads = table.get_int("thread_num", DEFAULT_MAX_THREADS, lo=1, hi=_U32_MAX)

    isvprodid = table.get_int("isvprodid", 0, lo=0, hi=_U16_MAX)
    isvsvn = table.get_int("isvsvn", 0, lo=0, hi=_U16_MAX)
    remote_attestation = _build_remote_attestation(ctx, table)
    spid = table.get_str("ra_client_spid") if table.has("ra_client_spid") else None
    table.take("ra_client_spid")
    if spid:
        spid = _check_hex(ctx, "sgx.ra_client_spid", spid, digits=32, what="an SPID")
    linkable = (
        table.get_bool("ra_client_linkable", False) if table.has("ra_client_linkable") else None
    )
    table.take("ra_client_linkable")
    if remote_attestation == "epid":
        ctx.warn("sgx.remote_attestation", "EPID attestation was removed in Gramine v1.9")
        if not spid and not any(p.key == "sgx.ra_client_spid" for p in ctx.problems):
            ctx.error(
                "sgx.ra_client_spid",
                "is required for EPID attestation",
                expected="32 hex digits",
                found=spid if spid is not None else "nothing",
            )

    trusted = _build_trusted_files(ctx, table)
    allowed = _build_allowed_files(ctx, table)
    policy = cast(
        FileCheckPolicy, table.get_enum("file_check_policy", _FILE_CHECK_POLICIES, "strict")
    )
    preheat = table.get_bool("preheat_enclave", False)
    if preheat and edmm:
        ctx.error(
            "sgx.preheat_enclave",
            "must be false when sgx.edmm_enable is true",
            expected="false",
            found=True,
        )
    enable_stats = table.get_bool("enable_stats", False)
    if enable_stats and not debug:
        ctx.error("sgx.enable_stats", "requires sgx.debug = true", expected="false", found=True)

    use_exinfo = table.get_bool("use_exinfo", False)
    if table.has("require_exinfo"):
        legacy = table.get_bool("require_exinfo", False)
        if table.has("use_exinfo"):
            ctx.error(
                "sgx.require_exinfo",
                "conflicts with sgx.use_exinfo (its pre-v1.6 name)",
                expected="only sgx.use_exinfo",
                found="both",
            )
        else:
            ctx.warn("sgx.require_exinfo", "deprecated in Gramine v1.6; use sgx.use_exinfo")
            use_exinfo = legacy

    cpu = _build_cpu_features(ctx, table)
    seal = _build_seal_key(ctx, table)
    profile = _build_profile(ctx, table, debug)
    config = SgxConfig(
        debug=debug,
        edmm_enable=edmm,
        enclave_size=enclave_size,
        max_threads=max_threads,
        isvprodid=isvprodid,
        isvsvn=isvsvn,
        remote_attestation=remote_attestation,
        ra_client_spid=spid,
        ra_client_linkable=linkable,
        trusted_files=trusted,
        allowed_files=allowed,
        file_check_policy=policy,
        preheat_enclave=preheat,
        enable_stats=enable_stats,
        use_exinfo=use_exinfo,
        insecure__allow_memfaults_without_exinfo=table.get_bool(
            "insecure__allow_memfaults_without_exinfo", False
        ),
        insecure__rpc_thread_num=table.get_int("insecure__rpc_thread_num", 0, lo=0, hi=_U32_MAX),
        cpu_features=cpu,
        seal_key=seal,
        profile=profile,
        vtune_profile=table.get_bool("vtune_profile", False),
        trusted_files_cache_size=table.get_opt_size("trusted_files_cache_size"),
    )
    table.finish(
        warn_only={"nonpie_binary": "not read by current Gramine (removed option); ignored"}
    )
    return config


def _build_remote_attestation(ctx: _Ctx, table: _Table) -> RemoteAttestation:
    value = table.data.get("remote_attestation", _MISSING)
    if isinstance(value, bool):
        table.take("remote_attestation")
        ctx.warn(
            "sgx.remote_attestation",
            'the boolean form is Gramine v1.0-v1.2 syntax; use "none", "dcap" or "epid"',
        )
        if not value:
            return "none"
        spid = table.data.get("ra_client_spid")
        return "epid" if isinstance(spid, str) and spid else "dcap"
    return cast(
        RemoteAttestation, table.get_enum("remote_attestation", _REMOTE_ATTESTATION, "none")
    )


def _build_trusted_files(ctx: _Ctx, table: _Table) -> tuple[TrustedFile, ...]:
    value = table.take("trusted_files")
    if value is _MISSING:
        return ()
    if isinstance(value, dict):
        ctx.error(
            "sgx.trusted_files",
            "the table form (sgx.trusted_files.<name>) is pre-1.0 Graphene syntax; use an array",
            expected="an array",
            found="table",
        )
        return ()
    if not isinstance(value, list):
        ctx.wrong_type("sgx.trusted_files", "an array", value)
        return ()
    result: list[TrustedFile] = []
    hashes: dict[str, tuple[int, str]] = {}
    for index, item in enumerate(value):
        key = f"sgx.trusted_files[{index}]"
        if isinstance(item, str):
            uri = _check_uri(ctx, key, item)
            if uri is not None:
                result.append(TrustedFile(uri))
            continue
        if not isinstance(item, dict):
            ctx.wrong_type(key, 'a "file:..." string or a table { uri, sha256 }', item)
            continue
        entry = _Table(ctx, item, key)
        if not entry.has("uri"):
            entry.take("uri")
            ctx.error(entry.key("uri"), "is required", expected="a file: URI")
            uri = None
        else:
            uri = _check_uri(ctx, entry.key("uri"), entry.take("uri"))
        raw_sha = entry.take("sha256")
        sha = (
            None
            if raw_sha is _MISSING
            else _check_hex(ctx, entry.key("sha256"), raw_sha, digits=64, what="a SHA-256")
        )
        entry.finish()
        if uri is None or (raw_sha is not _MISSING and sha is None):
            continue
        if sha is not None and uri.endswith("/"):
            ctx.error(
                entry.key("sha256"),
                "a directory entry (URI ending in '/') cannot have a sha256",
                expected="no sha256",
                found=sha,
            )
            continue
        if sha is not None:
            seen = hashes.get(uri)
            if seen is not None and seen[1] != sha:
                ctx.error(
                    entry.key("sha256"),
                    f"conflicts with the sha256 of sgx.trusted_files[{seen[0]}] for the same URI",
                    expected=seen[1],
                    found=sha,
                )
                continue
            hashes.setdefault(uri, (index, sha))
        result.append(TrustedFile(uri, sha))
    return tuple(result)


def _build_allowed_files(ctx: _Ctx, table: _Table) -> tuple[str, ...]:
    value = table.take("allowed_files")
    if value is _MISSING:
        return ()
    if isinstance(value, dict):
        ctx.error(
            "sgx.allowed_files",
            "the table form (sgx.allowed_files.<name>) is pre-1.0 Graphene syntax; use an array",
            expected="an array",
            found="table",
        )
        return ()
    if not isinstance(value, list):
        ctx.wrong_type("sgx.allowed_files", "an array of URIs", value)
        return ()
    uris = [
        _check_uri(ctx, f"sgx.allowed_files[{i}]", item, ("file:", "dev:"))
        for i, item in enumerate(value)
    ]
    return tuple(uri for uri in uris if uri is not None)


def _build_cpu_features(ctx: _Ctx, sgx: _Table) -> CpuFeatures:
    table = sgx.get_table("cpu_features")
    legacy = [name for name in _REQUIRE_CPU_KEYS if sgx.has(f"require_{name}")]
    values: dict[str, str] = {}
    if table is not None:
        for name in ("avx", "avx512", "amx"):
            values[name] = table.get_enum(name, _CPU_FEATURE, "unspecified")
        for name in ("mpx", "pkru"):
            values[name] = table.get_enum(name, _CPU_FEATURE_STRICT, "disabled")
        table.finish()
    for name in legacy:
        key = f"sgx.require_{name}"
        required = sgx.get_bool(f"require_{name}", False)
        if table is not None:
            ctx.error(
                key,
                "cannot be combined with sgx.cpu_features (its v1.6 replacement)",
                expected="only sgx.cpu_features",
                found="both",
            )
            continue
        ctx.warn(key, f"deprecated in Gramine v1.6; use sgx.cpu_features.{name}")
        if required:
            values[name] = "required"
    return CpuFeatures(
        avx=cast(CpuFeature, values.get("avx", "unspecified")),
        avx512=cast(CpuFeature, values.get("avx512", "unspecified")),
        amx=cast(CpuFeature, values.get("amx", "unspecified")),
        mpx=cast(CpuFeatureStrict, values.get("mpx", "disabled")),
        pkru=cast(CpuFeatureStrict, values.get("pkru", "disabled")),
    )


def _build_seal_key(ctx: _Ctx, sgx: _Table) -> SealKeyMasks:
    table = sgx.get_table("seal_key")
    if table is None:
        return SealKeyMasks()
    masks: dict[str, int] = {}
    for name, bits, default in (
        ("flags_mask", 64, DEFAULT_SEAL_FLAGS_MASK),
        ("xfrm_mask", 64, DEFAULT_SEAL_XFRM_MASK),
        ("misc_mask", 32, DEFAULT_SEAL_MISC_MASK),
    ):
        raw = table.take(name)
        parsed = None if raw is _MISSING else _check_mask(ctx, table.key(name), raw, bits=bits)
        masks[name] = default if parsed is None else parsed
    table.finish()
    return SealKeyMasks(**masks)


def _build_profile(ctx: _Ctx, sgx: _Table, debug: bool) -> SgxProfile | None:
    table = sgx.get_table("profile")
    if table is None:
        return None
    enable = table.get_enum("enable", _PROFILE_ENABLE, "none") if table.has("enable") else None
    mode = table.get_enum("mode", _PROFILE_MODE, "aex") if table.has("mode") else None
    with_stack = table.get_bool("with_stack", False) if table.has("with_stack") else None
    frequency = table.get_opt_int("frequency", lo=1, hi=_U32_MAX)
    table.take("enable")
    table.take("mode")
    table.take("with_stack")
    table.finish()
    if enable not in (None, "none") and not debug:
        ctx.warn(
            "sgx.profile.enable", "SGX profiling works only in debug enclaves (sgx.debug = true)"
        )
    return SgxProfile(enable, mode, with_stack, frequency)


def _cross_checks(ctx: _Ctx, loader: LoaderConfig, sgx: SgxConfig) -> None:
    if loader.insecure__use_host_env:
        for var in loader.env:
            if var.passthrough:
                ctx.warn(
                    _join("loader.env", var.name),
                    "passthrough has no effect with loader.insecure__use_host_env = true",
                )
    if sgx.remote_attestation != "epid" and sgx.ra_client_spid:
        ctx.warn("sgx.ra_client_spid", "only used by EPID attestation; ignored")


# --- canonical dict -------------------------------------------------------------------------------


def _mount_to_dict(mount: Mount | FsRoot) -> dict[str, Any]:
    out: dict[str, Any] = {"type": mount.type}
    if isinstance(mount, Mount):
        out["path"] = mount.path
    if mount.uri is not None:
        out["uri"] = mount.uri
    if mount.type == "encrypted":
        out["key_name"] = mount.key_name or "default"
        if mount.enable_recovery:
            out["enable_recovery"] = True
    return out


def _fs_to_dict(fs: FsConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"mounts": [_mount_to_dict(m) for m in fs.mounts]}
    if fs.root is not None:
        out["root"] = _mount_to_dict(fs.root)
    if fs.start_dir is not None:
        out["start_dir"] = fs.start_dir
    if fs.insecure__keys:
        out["insecure__keys"] = dict(fs.insecure__keys)
    return out


def _loader_to_dict(loader: LoaderConfig) -> dict[str, Any]:
    entry: dict[str, Any] = {"uri": loader.entrypoint.uri}
    if loader.entrypoint.sha256 is not None:
        entry["sha256"] = loader.entrypoint.sha256
    out: dict[str, Any] = {
        "entrypoint": entry,
        "gid": loader.gid,
        "insecure__disable_aslr": loader.insecure__disable_aslr,
        "insecure__use_cmdline_argv": loader.insecure__use_cmdline_argv,
        "insecure__use_host_env": loader.insecure__use_host_env,
        "log_level": loader.log_level,
        "uid": loader.uid,
    }
    if loader.log_file is not None:
        out["log_file"] = loader.log_file
    if loader.argv is not None:
        out["argv"] = list(loader.argv)
    if loader.argv_src_file is not None:
        out["argv_src_file"] = loader.argv_src_file
    if loader.env:
        out["env"] = {
            var.name: {"passthrough": True} if var.passthrough else var.value for var in loader.env
        }
    if loader.env_src_file is not None:
        out["env_src_file"] = loader.env_src_file
    return out


def _thaw(value: object) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


def _sys_to_dict(config: SysConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        "brk": {"max_size": format_size(config.brk_max_size)},
        "disallow_subprocesses": config.disallow_subprocesses,
        "enable_extra_runtime_domain_names_conf": config.enable_extra_runtime_domain_names_conf,
        "enable_sigterm_injection": config.enable_sigterm_injection,
        "experimental__enable_flock": config.experimental__enable_flock,
        "fds": {"limit": config.fds_limit},
        "insecure__allow_eventfd": config.insecure__allow_eventfd,
        "stack": {"size": format_size(config.stack_size)},
    }
    if config.allowed_ioctls:
        out["allowed_ioctls"] = [
            {"request_code": io.request_code, **({"struct": io.struct} if io.struct else {})}
            for io in config.allowed_ioctls
        ]
    if config.ioctl_structs:
        out["ioctl_structs"] = _thaw(config.ioctl_structs)
    if config.debug__mock_syscalls:
        out["debug__mock_syscalls"] = [
            {"name": m.name, **({"return": m.return_value} if m.return_value is not None else {})}
            for m in config.debug__mock_syscalls
        ]
    return out


def _sgx_to_dict(sgx: SgxConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        "allowed_files": list(sgx.allowed_files),
        "cpu_features": {
            "amx": sgx.cpu_features.amx,
            "avx": sgx.cpu_features.avx,
            "avx512": sgx.cpu_features.avx512,
            "mpx": sgx.cpu_features.mpx,
            "pkru": sgx.cpu_features.pkru,
        },
        "debug": sgx.debug,
        "edmm_enable": sgx.edmm_enable,
        "enable_stats": sgx.enable_stats,
        "enclave_size": format_size(sgx.enclave_size),
        "file_check_policy": sgx.file_check_policy,
        "insecure__allow_memfaults_without_exinfo": sgx.insecure__allow_memfaults_without_exinfo,
        "insecure__rpc_thread_num": sgx.insecure__rpc_thread_num,
        "isvprodid": sgx.isvprodid,
        "isvsvn": sgx.isvsvn,
        "max_threads": sgx.max_threads,
        "preheat_enclave": sgx.preheat_enclave,
        "remote_attestation": sgx.remote_attestation,
        "seal_key": {
            "flags_mask": f"0x{sgx.seal_key.flags_mask:016x}",
            "misc_mask": f"0x{sgx.seal_key.misc_mask:08x}",
            "xfrm_mask": f"0x{sgx.seal_key.xfrm_mask:016x}",
        },
        "trusted_files": [
            {"uri": tf.uri, **({"sha256": tf.sha256} if tf.sha256 is not None else {})}
            for tf in sgx.trusted_files
        ],
        "use_exinfo": sgx.use_exinfo,
        "vtune_profile": sgx.vtune_profile,
    }
    if sgx.ra_client_spid is not None:
        out["ra_client_spid"] = sgx.ra_client_spid
    if sgx.ra_client_linkable is not None:
        out["ra_client_linkable"] = sgx.ra_client_linkable
    if sgx.profile is not None:
        profile = {
            "enable": sgx.profile.enable,
            "frequency": sgx.profile.frequency,
            "mode": sgx.profile.mode,
            "with_stack": sgx.profile.with_stack,
        }
        out["profile"] = {k: v for k, v in profile.items() if v is not None}
    if sgx.trusted_files_cache_size is not None:
        out["trusted_files_cache_size"] = format_size(sgx.trusted_files_cache_size)
    return out


# --- TOML writer ----------------------------------------------------------------------------------

_TOML_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_key(name: str) -> str:
    return name if _BARE_KEY_RE.fullmatch(name) else _toml_string(name)


def _toml_inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_inline(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(k)} = {_toml_inline(v)}" for k, v in sorted(value.items()))
        return "{ " + items + " }"
    raise ManifestError("cannot write value as TOML", found=type(value).__name__)


def _toml_dumps(data: Mapping[str, Any]) -> str:
    lines: list[str] = []
    _toml_table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_table(data: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = [(k, v) for k, v in sorted(data.items()) if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in sorted(data.items()) if isinstance(v, Mapping)]
    if path and (scalars or not tables):
        lines.append("")
        lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
    for name, value in scalars:
        if isinstance(value, list | tuple) and value:
            lines.append(f"{_toml_key(name)} = [")
            lines.extend(f"  {_toml_inline(item)}," for item in value)
            lines.append("]")
        else:
            lines.append(f"{_toml_key(name)} = {_toml_inline(value)}")
    for name, value in tables:
        _toml_table(value, [*path, name], lines)
