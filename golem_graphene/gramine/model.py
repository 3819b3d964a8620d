"""The manifest model: one frozen dataclass per section, with Gramine's documented defaults.

Field names are Gramine's key names (``loader.insecure__use_host_env`` is
``LoaderConfig.insecure__use_host_env``); sizes are bytes. The parser fills every default in, so
a model read from a minimal manifest already says what Gramine will do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, TypeAlias

__all__ = [
    "DEFAULT_BRK_MAX_SIZE",
    "DEFAULT_ENCLAVE_SIZE_NO_EDMM",
    "DEFAULT_ENCLAVE_SIZE_WITH_EDMM",
    "DEFAULT_FDS_LIMIT",
    "DEFAULT_MAX_THREADS",
    "DEFAULT_STACK_SIZE",
    "AllowedIoctl",
    "CpuFeatures",
    "EnvVar",
    "FsConfig",
    "FsRoot",
    "LibosConfig",
    "LoaderConfig",
    "LoaderEntrypoint",
    "MockSyscall",
    "Mount",
    "SealKeyMasks",
    "SgxConfig",
    "SgxProfile",
    "SysConfig",
    "TrustedFile",
]

# --- Gramine's documented defaults ----------------------------------------------------------------

DEFAULT_ENCLAVE_SIZE_NO_EDMM: Final = "256M"
DEFAULT_ENCLAVE_SIZE_WITH_EDMM: Final = "1024G"
DEFAULT_MAX_THREADS: Final = 4
DEFAULT_STACK_SIZE: Final = "256K"
DEFAULT_BRK_MAX_SIZE: Final = "256K"
DEFAULT_FDS_LIMIT: Final = 900
DEFAULT_SEAL_FLAGS_MASK: Final = 0xFFFF_FFFF_FFFF_FFFF
DEFAULT_SEAL_XFRM_MASK: Final = 0xFFFF_FFFF_FFF9_FF1B
DEFAULT_SEAL_MISC_MASK: Final = 0xFFFF_FFFF

LogLevel: TypeAlias = Literal["none", "error", "warning", "debug", "trace", "all"]
MountType: TypeAlias = Literal["chroot", "encrypted", "tmpfs", "untrusted_shm"]
RemoteAttestation: TypeAlias = Literal["none", "epid", "dcap"]
FileCheckPolicy: TypeAlias = Literal["strict", "allow_all_but_log"]
CpuFeature: TypeAlias = Literal["unspecified", "disabled", "required"]
CpuFeatureStrict: TypeAlias = Literal["disabled", "required"]


# --- sections -------------------------------------------------------------------------------------


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
