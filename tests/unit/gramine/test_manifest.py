"""Gramine manifest model: every key and default, every validation rule, canonical form, fuzzing.

Rules and defaults are Gramine's (``Documentation/manifest-syntax.rst``,
``python/graminelibos/manifest.py``, ``manifest_check.py``); each failing case asserts the key
the problem names and a fragment of the rule, because "names the key and the rule" is the
contract callers (the CLI, the simulator) rely on.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_graphene.errors import ConfigError, ManifestError
from golem_graphene.gramine import _parse as parse_module
from golem_graphene.gramine.install import GramineInstall, detect_gramine
from golem_graphene.gramine.manifest import (
    Manifest,
    canonical_manifest_bytes,
    check_manifest,
    decode_serialized_strings,
)
from golem_graphene.gramine.model import (
    AllowedIoctl,
    CpuFeatures,
    EnvVar,
    FsRoot,
    LoaderEntrypoint,
    MockSyscall,
    Mount,
    SealKeyMasks,
    TrustedFile,
)
from golem_graphene.gramine.problems import ManifestSyntaxError, ManifestValidationError
from golem_graphene.gramine.sizes import format_size

GRAMINE = GramineInstall(Path("/opt/gramine/lib"), False, "stand-in")
MIN = 'libos.entrypoint = "/app"\nfs.mounts = []\n'
SHA_A = "a" * 64
SHA_B = "b" * 64


def parse(text: str) -> Manifest:
    return Manifest.from_toml(text, gramine=GRAMINE)


def failure(text: str) -> ManifestValidationError:
    with pytest.raises(ManifestValidationError) as info:
        parse(text)
    return info.value


# --- defaults ------------------------------------------------------------------------------------


def test_defaults_of_a_minimal_manifest() -> None:
    m = parse(MIN)
    assert m.libos.entrypoint == "/app"
    assert m.libos.check_invalid_pointers is True
    loader = m.loader
    assert loader.entrypoint == LoaderEntrypoint("file:/opt/gramine/lib/libsysdb.so")
    assert loader.log_level == "error"
    assert loader.log_file is None
    assert loader.argv is None and loader.argv_src_file is None
    assert loader.insecure__use_cmdline_argv is False
    assert loader.env == () and loader.env_src_file is None
    assert loader.insecure__use_host_env is False and loader.insecure__disable_aslr is False
    assert (loader.uid, loader.gid) == (0, 0)
    assert m.fs.mounts == () and m.fs.root is None and m.fs.start_dir is None
    assert m.fs.insecure__keys == ()
    assert m.sys.stack_size == 256 * 1024
    assert m.sys.brk_max_size == 256 * 1024
    assert m.sys.fds_limit == 900
    for flag in (
        "insecure__allow_eventfd",
        "enable_sigterm_injection",
        "disallow_subprocesses",
        "enable_extra_runtime_domain_names_conf",
        "experimental__enable_flock",
    ):
        assert getattr(m.sys, flag) is False, flag
    sgx = m.sgx
    assert sgx.debug is False and sgx.edmm_enable is False
    assert sgx.enclave_size == 256 * 1024 * 1024
    assert sgx.max_threads == 4
    assert (sgx.isvprodid, sgx.isvsvn) == (0, 0)
    assert sgx.remote_attestation == "none"
    assert sgx.trusted_files == () and sgx.allowed_files == ()
    assert sgx.file_check_policy == "strict"
    assert sgx.preheat_enclave is False and sgx.enable_stats is False
    assert sgx.use_exinfo is False and sgx.insecure__allow_memfaults_without_exinfo is False
    assert sgx.insecure__rpc_thread_num == 0
    assert sgx.cpu_features == CpuFeatures(
        "unspecified", "unspecified", "unspecified", "disabled", "disabled"
    )
    assert sgx.seal_key == SealKeyMasks(0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFF9FF1B, 0xFFFFFFFF)
    assert sgx.profile is None and sgx.vtune_profile is False
    assert m.warnings == ()
    assert m.insecure_options() == ()


def test_edmm_changes_the_default_enclave_size() -> None:
    m = parse(MIN + "sgx.edmm_enable = true\n")
    assert m.sgx.enclave_size == 1024 * 1024**3
    explicit = parse(MIN + 'sgx.edmm_enable = true\nsgx.enclave_size = "64G"\n')
    assert explicit.sgx.enclave_size == 64 * 1024**3


def test_missing_fs_mounts_is_a_warning_like_the_schema_check() -> None:
    m = parse('libos.entrypoint = "/app"\n')
    assert [(p.key, p.severity) for p in m.warnings] == [("fs.mounts", "warning")]


def test_default_loader_entrypoint_comes_from_the_detected_install() -> None:
    m = Manifest.from_toml(MIN)
    detected = detect_gramine()
    assert m.loader.entrypoint.uri == f"file:{detected.pkglibdir}/libsysdb.so"


# --- every key -----------------------------------------------------------------------------------

# Inline tables must sit on one line: the backslash-newlines below join lines in the literal.
FULL = f"""
libos.entrypoint = "/usr/bin/app"
libos.check_invalid_pointers = false

loader.entrypoint = {{ uri = "file:/g/libsysdb.so", sha256 = "{SHA_A.upper()}" }}
loader.log_level = "trace"
loader.log_file = "/tmp/gramine.log"
loader.argv = ["app", "--flag", ""]
loader.env.PLAIN = "v1"
loader.env.TABLE = {{ value = "v2" }}
loader.env.HOST = {{ passthrough = true }}
loader.env."WITH SPACE" = "x"
loader.env_src_file = "file:env.bin"
loader.insecure__disable_aslr = true
loader.uid = 1000
loader.gid = 1001

fs.root = {{ type = "chroot", uri = "file:/srv/root" }}
fs.start_dir = "/work"
fs.insecure__keys.default = "00112233445566778899AABBCCDDEEFF"
fs.mounts = [
  {{ path = "/lib", uri = "file:/g/runtime/glibc" }},
  {{ type = "tmpfs", path = "/tmp", uri = "ignored" }},
  {{ type = "encrypted", path = "/enc", uri = "file:enc/" }},
  {{ type = "encrypted", path = "/sealed", uri = "file:sealed/", key_name = "_sgx_mrenclave", \
enable_recovery = true }},
  {{ type = "untrusted_shm", path = "/dev/shm/x", uri = "dev:/dev/shm/x" }},
]

sys.stack.size = "8M"
sys.brk.max_size = "1g"
sys.fds.limit = 4096
sys.insecure__allow_eventfd = true
sys.enable_sigterm_injection = true
sys.disallow_subprocesses = true
sys.enable_extra_runtime_domain_names_conf = true
sys.experimental__enable_flock = true
sys.ioctl_structs.gpu = [ {{ size = 8, direction = "out" }} ]
sys.allowed_ioctls = [ {{ request_code = 0x1234, struct = "gpu" }}, {{ request_code = 7 }} ]
sys.debug__mock_syscalls = [ {{ name = "sched_yield", return = 0 }}, {{ name = "sync" }} ]

sgx.debug = true
sgx.edmm_enable = false
sgx.enclave_size = "2G"
sgx.max_threads = 64
sgx.isvprodid = 65535
sgx.isvsvn = 7
sgx.remote_attestation = "dcap"
sgx.trusted_files = [
  "file:app",
  {{ uri = "file:/usr/lib/" }},
]
sgx.allowed_files = ["file:out/", "dev:/dev/null"]
sgx.file_check_policy = "allow_all_but_log"
sgx.preheat_enclave = true
sgx.enable_stats = true
sgx.use_exinfo = true
sgx.insecure__allow_memfaults_without_exinfo = true
sgx.insecure__rpc_thread_num = 8
sgx.cpu_features = {{ avx = "required", avx512 = "disabled", amx = "unspecified", \
mpx = "required", pkru = "disabled" }}
sgx.seal_key = {{ flags_mask = "0x3", xfrm_mask = "ff", misc_mask = "0X0" }}
sgx.profile = {{ enable = "main", mode = "ocall_outer", with_stack = true, frequency = 50 }}
sgx.vtune_profile = true
sgx.trusted_files_cache_size = "64M"
"""


def test_every_key_is_parsed() -> None:
    m = parse(FULL)
    assert m.libos.check_invalid_pointers is False
    loader = m.loader
    assert loader.entrypoint == LoaderEntrypoint("file:/g/libsysdb.so", SHA_A)
    assert loader.log_level == "trace" and loader.log_file == "/tmp/gramine.log"
    assert loader.argv == ("app", "--flag", "")
    assert loader.env == (
        EnvVar("HOST", None, passthrough=True),
        EnvVar("PLAIN", "v1"),
        EnvVar("TABLE", "v2"),
        EnvVar("WITH SPACE", "x"),
    )
    assert loader.env_var("TABLE") == EnvVar("TABLE", "v2")
    assert loader.env_var("NOPE") is None
    assert loader.env_src_file == "file:env.bin"
    assert loader.insecure__disable_aslr is True
    assert (loader.uid, loader.gid) == (1000, 1001)

    fs = m.fs
    assert fs.root == FsRoot("chroot", "file:/srv/root")
    assert fs.start_dir == "/work"
    assert fs.insecure__keys == (("default", "00112233445566778899aabbccddeeff"),)
    assert fs.mounts == (
        Mount("/lib", "chroot", "file:/g/runtime/glibc"),
        Mount("/tmp", "tmpfs", None),
        Mount("/enc", "encrypted", "file:enc/", "default"),
        Mount("/sealed", "encrypted", "file:sealed/", "_sgx_mrenclave", enable_recovery=True),
        Mount("/dev/shm/x", "untrusted_shm", "dev:/dev/shm/x"),
    )

    s = m.sys
    assert (s.stack_size, s.brk_max_size, s.fds_limit) == (8 << 20, 1 << 30, 4096)
    assert s.insecure__allow_eventfd and s.enable_sigterm_injection and s.disallow_subprocesses
    assert s.enable_extra_runtime_domain_names_conf and s.experimental__enable_flock
    assert s.allowed_ioctls == (AllowedIoctl(0x1234, "gpu"), AllowedIoctl(7, None))
    assert dict(s.ioctl_structs["gpu"][0]) == {"size": 8, "direction": "out"}  # type: ignore[index]
    assert s.debug__mock_syscalls == (MockSyscall("sched_yield", 0), MockSyscall("sync", None))

    sgx = m.sgx
    assert sgx.debug and not sgx.edmm_enable
    assert sgx.enclave_size == 2 << 30 and sgx.max_threads == 64
    assert (sgx.isvprodid, sgx.isvsvn) == (65535, 7)
    assert sgx.remote_attestation == "dcap"
    assert sgx.trusted_files == (TrustedFile("file:app"), TrustedFile("file:/usr/lib/"))
    assert sgx.trusted_files[1].is_directory and not sgx.trusted_files[0].is_directory
    assert sgx.allowed_files == ("file:out/", "dev:/dev/null")
    assert sgx.file_check_policy == "allow_all_but_log"
    assert sgx.preheat_enclave and sgx.enable_stats and sgx.use_exinfo
    assert sgx.insecure__allow_memfaults_without_exinfo and sgx.insecure__rpc_thread_num == 8
    assert sgx.cpu_features == CpuFeatures(
        "required", "disabled", "unspecified", "required", "disabled"
    )
    assert sgx.seal_key == SealKeyMasks(0x3, 0xFF, 0)
    assert sgx.profile is not None
    assert (sgx.profile.enable, sgx.profile.mode, sgx.profile.with_stack) == (
        "main",
        "ocall_outer",
        True,
    )
    assert sgx.profile.frequency == 50
    assert sgx.vtune_profile is True and sgx.trusted_files_cache_size == 64 << 20
    assert m.insecure_options() == (
        "sgx.debug = true",
        'loader.log_level = "trace"',
        "loader.insecure__disable_aslr = true",
        "sys.insecure__allow_eventfd = true",
        "sys.experimental__enable_flock = true",
        "sgx.insecure__allow_memfaults_without_exinfo = true",
        'sgx.file_check_policy = "allow_all_but_log"',
        "sgx.allowed_files = [ ... ]",
        'fs.insecure__keys.default = "..."',
    )


def test_array_of_tables_syntax_for_mounts_and_trusted_files() -> None:
    m = parse(
        'libos.entrypoint = "/a"\n'
        '[[fs.mounts]]\npath = "/lib"\nuri = "file:/lib"\n'
        f'[[sgx.trusted_files]]\nuri = "file:/lib/x.so"\nsha256 = "{SHA_A}"\n'
    )
    assert m.fs.mounts == (Mount("/lib", "chroot", "file:/lib"),)
    assert m.sgx.trusted_files == (TrustedFile("file:/lib/x.so", SHA_A),)


# --- legacy forms --------------------------------------------------------------------------------


def test_legacy_keys_are_accepted_with_warnings_and_normalised() -> None:
    m = parse(
        MIN
        + 'loader.entrypoint = "file:/old/libsysdb.so"\n'
        + "sgx.thread_num = 16\nsgx.nonpie_binary = true\n"
        + "sgx.require_avx = true\nsgx.require_mpx = false\nsgx.require_exinfo = true\n"
    )
    assert m.loader.entrypoint == LoaderEntrypoint("file:/old/libsysdb.so")
    assert m.sgx.max_threads == 16
    assert m.sgx.cpu_features.avx == "required" and m.sgx.cpu_features.mpx == "disabled"
    assert m.sgx.use_exinfo is True
    warned = {p.key for p in m.warnings}
    assert warned == {
        "loader.entrypoint",
        "sgx.thread_num",
        "sgx.nonpie_binary",
        "sgx.require_avx",
        "sgx.require_mpx",
        "sgx.require_exinfo",
    }
    assert all(p.severity == "warning" for p in m.warnings)
    dumped = m.to_dict()
    assert "thread_num" not in dumped["sgx"] and dumped["sgx"]["max_threads"] == 16
    assert dumped["loader"]["entrypoint"] == {"uri": "file:/old/libsysdb.so"}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("sgx.remote_attestation = false\n", "none"),
        ("sgx.remote_attestation = true\n", "dcap"),
        ('sgx.remote_attestation = true\nsgx.ra_client_spid = ""\n', "dcap"),
        (f'sgx.remote_attestation = true\nsgx.ra_client_spid = "{"ab" * 16}"\n', "epid"),
    ],
)
def test_legacy_boolean_remote_attestation(extra: str, expected: str) -> None:
    m = parse(MIN + extra)
    assert m.sgx.remote_attestation == expected
    assert "sgx.remote_attestation" in {p.key for p in m.warnings}


def test_epid_is_accepted_with_a_warning_and_its_spid() -> None:
    m = parse(
        MIN + 'sgx.remote_attestation = "epid"\n'
        f'sgx.ra_client_spid = "{"AB" * 16}"\nsgx.ra_client_linkable = true\n'
    )
    assert m.sgx.remote_attestation == "epid"
    assert m.sgx.ra_client_spid == "ab" * 16 and m.sgx.ra_client_linkable is True
    assert [p.key for p in m.warnings] == ["sgx.remote_attestation"]


# --- validation rules ----------------------------------------------------------------------------

H = "0" * 64
BAD_CASES: list[tuple[str, str, str]] = [
    # (manifest text, key named, rule fragment)
    ("libos.entrypoint = ", "<toml>", "not a valid TOML document"),
    ('libos.entrypoint = "/a"\nlibos.entrypoint = "/b"\n', "<toml>", "not a valid TOML"),
    ("fs.mounts = []\n", "libos.entrypoint", "is required"),
    ("libos = 3\n", "libos", "must be a table"),
    ("libos.entrypoint = 5\n", "libos.entrypoint", "must be a string"),
    ('libos.entrypoint = ""\n', "libos.entrypoint", "must not be empty"),
    ('libos.entrypoint = "/a\\u0000b"\n', "libos.entrypoint", "NUL"),
    (MIN + "libos.check_invalid_pointers = 1\n", "libos.check_invalid_pointers", "boolean"),
    (MIN + "bogus = 1\n", "bogus", "unknown key"),
    (MIN + 'sgx.enclave_sise = "1G"\n', "sgx.enclave_sise", "unknown key"),
    (MIN + "sgx.protected_files = []\n", "sgx.protected_files", "removed in Gramine v1.5"),
    (MIN + 'loader.preload = "file:x"\n', "loader.preload", "Graphene"),
    (MIN + 'fs.mount.lib.path = "/lib"\n', "fs.mount", "fs.mounts array"),
    # sizes
    (MIN + 'sgx.enclave_size = "300M"\n', "sgx.enclave_size", "must be a power of two"),
    (MIN + 'sgx.enclave_size = "0"\n', "sgx.enclave_size", "must be a power of two"),
    (MIN + "sgx.enclave_size = 268435456\n", "sgx.enclave_size", "size string"),
    (MIN + 'sgx.enclave_size = "1T"\n', "sgx.enclave_size", "must be a size"),
    (MIN + 'sgx.enclave_size = " 1G"\n', "sgx.enclave_size", "must be a size"),
    (MIN + 'sgx.enclave_size = "-1G"\n', "sgx.enclave_size", "must be a size"),
    (MIN + 'sgx.enclave_size = "1.5G"\n', "sgx.enclave_size", "must be a size"),
    (MIN + 'sgx.enclave_size = "99999999999G"\n', "sgx.enclave_size", "overflows 64 bits"),
    (MIN + 'sys.stack.size = "1X"\n', "sys.stack.size", "must be a size"),
    (MIN + "sys.stack = 5\n", "sys.stack", "must be a table"),
    (MIN + 'sys.brk.max_size = ""\n', "sys.brk.max_size", "must be a size"),
    (MIN + "sys.fds.limit = -1\n", "sys.fds.limit", "at least 0"),
    (MIN + "sgx.trusted_files_cache_size = 5\n", "sgx.trusted_files_cache_size", "size string"),
    # integers and booleans
    (MIN + "sgx.max_threads = 0\n", "sgx.max_threads", "from 1 to"),
    (MIN + 'sgx.max_threads = "4"\n', "sgx.max_threads", "must be an integer"),
    (MIN + "sgx.max_threads = 4.0\n", "sgx.max_threads", "must be an integer"),
    (MIN + "sgx.max_threads = true\n", "sgx.max_threads", "must be an integer"),
    (MIN + 'sgx.debug = "true"\n', "sgx.debug", "must be a boolean"),
    (MIN + "sgx.debug = 1\n", "sgx.debug", "must be a boolean"),
    (MIN + "sgx.debug = 1979-05-27\n", "sgx.debug", "must be a boolean"),
    (MIN + "sgx.isvprodid = 65536\n", "sgx.isvprodid", "from 0 to 65535"),
    (MIN + "sgx.isvsvn = -1\n", "sgx.isvsvn", "from 0 to 65535"),
    (MIN + "loader.uid = -1\n", "loader.uid", "from 0 to"),
    (MIN + "sgx.insecure__rpc_thread_num = -2\n", "sgx.insecure__rpc_thread_num", "from 0"),
    (MIN + "sgx.thread_num = 8\nsgx.max_threads = 8\n", "sgx.thread_num", "conflicts"),
    # enums
    (MIN + 'loader.log_level = "verbose"\n', "loader.log_level", "must be one of"),
    (MIN + 'sgx.remote_attestation = "ias"\n', "sgx.remote_attestation", "must be one of"),
    (MIN + "sgx.remote_attestation = 1\n", "sgx.remote_attestation", "must be a string"),
    (MIN + 'sgx.file_check_policy = "lenient"\n', "sgx.file_check_policy", "must be one of"),
    (MIN + 'sgx.cpu_features.mpx = "unspecified"\n', "sgx.cpu_features.mpx", "must be one of"),
    (MIN + 'sgx.cpu_features.avx = "on"\n', "sgx.cpu_features.avx", "must be one of"),
    (MIN + 'sgx.profile.enable = "some"\n', "sgx.profile.enable", "must be one of"),
    (MIN + 'sgx.remote_attestation = "epid"\n', "sgx.ra_client_spid", "required for EPID"),
    (
        MIN + 'sgx.remote_attestation = "epid"\nsgx.ra_client_spid = "xyz"\n',
        "sgx.ra_client_spid",
        "32 hex digits",
    ),
    # cross-field rules
    (
        MIN + "sgx.edmm_enable = true\nsgx.preheat_enclave = true\n",
        "sgx.preheat_enclave",
        "must be false when sgx.edmm_enable",
    ),
    (MIN + "sgx.enable_stats = true\n", "sgx.enable_stats", "requires sgx.debug"),
    (
        MIN + 'sgx.require_avx = true\nsgx.cpu_features.avx = "required"\n',
        "sgx.require_avx",
        "cannot be combined",
    ),
    (MIN + "sgx.require_exinfo = true\nsgx.use_exinfo = true\n", "sgx.require_exinfo", "conflicts"),
    # seal key masks
    (
        MIN + 'sgx.seal_key.flags_mask = "0x1ffffffffffffffff"\n',
        "sgx.seal_key.flags_mask",
        "8-byte hex",
    ),
    (MIN + 'sgx.seal_key.misc_mask = "0x1ffffffff"\n', "sgx.seal_key.misc_mask", "4-byte hex"),
    (MIN + 'sgx.seal_key.xfrm_mask = "0xzz"\n', "sgx.seal_key.xfrm_mask", "8-byte hex"),
    (MIN + "sgx.seal_key.xfrm_mask = 3\n", "sgx.seal_key.xfrm_mask", "must be a string"),
    # trusted and allowed files
    (MIN + 'sgx.trusted_files = ["/abs/path"]\n', "sgx.trusted_files[0]", "unsupported URI"),
    (MIN + 'sgx.trusted_files = ["file:"]\n', "sgx.trusted_files[0]", "empty path"),
    (MIN + 'sgx.trusted_files = "file:a"\n', "sgx.trusted_files", "must be an array"),
    (MIN + 'sgx.trusted_files.libc = "file:a"\n', "sgx.trusted_files", "pre-1.0"),
    (MIN + "sgx.trusted_files = [5]\n", "sgx.trusted_files[0]", "must be a"),
    (
        MIN + 'sgx.trusted_files = [{ uri = "file:a", sha256 = "abc" }]\n',
        "sgx.trusted_files[0].sha256",
        "64 hex digits",
    ),
    (
        MIN + f'sgx.trusted_files = [{{ uri = "file:a", sha256 = "{"zz" * 32}" }}]\n',
        "sgx.trusted_files[0].sha256",
        "64 hex digits",
    ),
    (
        MIN + f'sgx.trusted_files = [{{ uri = "file:d/", sha256 = "{H}" }}]\n',
        "sgx.trusted_files[0].sha256",
        "directory entry",
    ),
    (
        MIN + f'sgx.trusted_files = [{{ uri = "file:a", sha256 = "{SHA_A}" }}, '
        f'{{ uri = "file:a", sha256 = "{SHA_B}" }}]\n',
        "sgx.trusted_files[1].sha256",
        "conflicts",
    ),
    (
        MIN + 'sgx.trusted_files = [{ uri = "file:a", size = 1 }]\n',
        "sgx.trusted_files[0].size",
        "unknown key",
    ),
    (
        MIN + f'sgx.trusted_files = [{{ sha256 = "{H}" }}]\n',
        "sgx.trusted_files[0].uri",
        "is required",
    ),
    (MIN + 'sgx.allowed_files = ["http://x"]\n', "sgx.allowed_files[0]", "unsupported URI"),
    (MIN + 'sgx.allowed_files.x = "file:a"\n', "sgx.allowed_files", "pre-1.0"),
    # loader.env
    (
        MIN + 'loader.env.A = { value = "x", passthrough = true }\n',
        "loader.env.A",
        "both value and passthrough",
    ),
    (MIN + "loader.env.A = {}\n", "loader.env.A", "value or passthrough"),
    (MIN + "loader.env.A = { passthrough = false }\n", "loader.env.A.passthrough", "prohibited"),
    (MIN + 'loader.env.A = { passthrough = "yes" }\n', "loader.env.A.passthrough", "boolean"),
    (MIN + "loader.env.A = { value = 1 }\n", "loader.env.A.value", "must be a string"),
    (MIN + "loader.env.A = 5\n", "loader.env.A", "must be a string"),
    (MIN + 'loader.env.A = { value = "x", extra = 1 }\n', "loader.env.A.extra", "unknown key"),
    (MIN + 'loader.env."A=B" = "x"\n', 'loader.env."A=B"', "contain no '='"),
    (MIN + 'loader.env = "A=B"\n', "loader.env", "must be a table"),
    # loader argv and entrypoint
    (MIN + 'loader.argv = "app"\n', "loader.argv", "must be an array"),
    (MIN + "loader.argv = [1]\n", "loader.argv[0]", "must be a string"),
    (
        MIN + 'loader.argv = ["a"]\nloader.insecure__use_cmdline_argv = true\n',
        "loader.insecure__use_cmdline_argv",
        "mutually exclusive",
    ),
    (
        MIN + 'loader.argv = ["a"]\nloader.argv_src_file = "file:argv"\n',
        "loader.argv_src_file",
        "mutually exclusive",
    ),
    (MIN + 'loader.argv_src_file = "argv"\n', "loader.argv_src_file", "unsupported URI"),
    (MIN + 'loader.env_src_file = "env"\n', "loader.env_src_file", "unsupported URI"),
    (MIN + "loader.entrypoint = 5\n", "loader.entrypoint", "must be a table"),
    (MIN + 'loader.entrypoint = "libsysdb.so"\n', "loader.entrypoint", "unsupported URI"),
    (
        MIN + 'loader.entrypoint = { uri = "file:x", sha256 = "bad" }\n',
        "loader.entrypoint.sha256",
        "64 hex digits",
    ),
    (
        MIN + 'loader.entrypoint = { uri = "file:x", foo = 1 }\n',
        "loader.entrypoint.foo",
        "unknown key",
    ),
    (MIN + 'loader.log_file = ""\n', "loader.log_file", "must not be empty"),
    # fs
    ('libos.entrypoint = "/a"\nfs.mounts = {}\n', "fs.mounts", "must be an array"),
    ('libos.entrypoint = "/a"\nfs.mounts = ["x"]\n', "fs.mounts[0]", "must be a table"),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ path = "lib", uri = "file:/lib" }]\n',
        "fs.mounts[0].path",
        "absolute",
    ),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ uri = "file:/lib" }]\n',
        "fs.mounts[0].path",
        "is required",
    ),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ path = "/lib" }]\n',
        "fs.mounts[0].uri",
        "required for a chroot mount",
    ),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ path = "/e", type = "encrypted" }]\n',
        "fs.mounts[0].uri",
        "required for a encrypted mount",
    ),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ path = "/lib", uri = "/lib" }]\n',
        "fs.mounts[0].uri",
        "unsupported URI",
    ),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ type = "nfs", path = "/n", uri = "file:n" }]\n',
        "fs.mounts[0].type",
        "must be one of",
    ),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ type = "tmpfs", path = "/t", key_name = "k" }]\n',
        "fs.mounts[0].key_name",
        "only valid for encrypted",
    ),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ path = "/t", uri = "file:t", '
        "enable_recovery = true }]\n",
        "fs.mounts[0].enable_recovery",
        "only valid for encrypted",
    ),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ type = "encrypted", path = "/e", uri = "file:e", '
        'key_name = "_mine" }]\n',
        "fs.mounts[0].key_name",
        "reserved",
    ),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ type = "untrusted_shm", path = "/s", '
        'uri = "file:s" }]\n',
        "fs.mounts[0].uri",
        "dev:",
    ),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ type = "encrypted", path = "/'
        + "e" * 600
        + '", uri = "file:e" }]\n',
        "fs.mounts[0].path",
        "512 bytes",
    ),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ path = "/l", uri = "file:l", ro = true }]\n',
        "fs.mounts[0].ro",
        "unknown key",
    ),
    (
        'libos.entrypoint = "/a"\nfs.mounts = [{ type = "tmpfs", path = "/t", uri = 3 }]\n',
        "fs.mounts[0].uri",
        "must be a string",
    ),
    (MIN + 'fs.root = { uri = "x" }\n', "fs.root.uri", "unsupported URI"),
    (MIN + 'fs.root = { uri = "file:/", path = "/" }\n', "fs.root.path", "unknown key"),
    (MIN + 'fs.insecure__keys.default = "abc"\n', "fs.insecure__keys.default", "32 hex"),
    (MIN + "fs.start_dir = 1\n", "fs.start_dir", "must be a string"),
    # sys
    (
        MIN + 'sys.allowed_ioctls = [{ struct = "x" }]\n',
        "sys.allowed_ioctls[0].request_code",
        "is required",
    ),
    (
        MIN + 'sys.allowed_ioctls = [{ request_code = 1, struct = "nope" }]\n',
        "sys.allowed_ioctls[0].struct",
        "names no table",
    ),
    (MIN + "sys.allowed_ioctls = [1]\n", "sys.allowed_ioctls[0]", "must be a table"),
    (
        MIN + "sys.debug__mock_syscalls = [{ return = 1 }]\n",
        "sys.debug__mock_syscalls[0].name",
        "is required",
    ),
    (MIN + "sys.ioctl_structs.x = 1.5\n", "sys.ioctl_structs.x", "only strings, integers"),
]


@pytest.mark.parametrize(("text", "key", "rule"), BAD_CASES)
def test_each_rule_names_the_key_and_the_rule(text: str, key: str, rule: str) -> None:
    error = failure(text)
    assert isinstance(error, ManifestError) and isinstance(error, ConfigError)
    matches = [p for p in error.problems if p.key == key and rule in p.rule]
    assert matches, [p.describe() for p in error.problems]
    assert matches[0].severity == "error"
    assert error.problems[0].severity == "error"
    assert str(error).startswith(f"{error.key}: {error.rule}")
    assert error.code == "manifest"


def test_power_of_two_error_reports_expected_and_found() -> None:
    error = failure(MIN + 'sgx.enclave_size = "300M"\n')
    assert (error.key, error.rule) == ("sgx.enclave_size", "must be a power of two")
    assert (error.expected, error.found) == ("power of two", "300M")
    assert (
        str(error) == "sgx.enclave_size: must be a power of two: expected power of two, found 300M"
    )


def test_syntax_errors_are_their_own_class() -> None:
    with pytest.raises(ManifestSyntaxError) as info:
        parse("[[[")
    assert info.value.key == "<toml>"


def test_all_problems_are_reported_at_once() -> None:
    result = check_manifest(
        'sgx.enclave_size = "3M"\nsgx.isvsvn = 70000\nloader.env.X = {}\nsgx.nonpie_binary = 1\n',
        gramine=GRAMINE,
    )
    assert not result.ok and result.manifest is None
    assert {p.key for p in result.errors} == {
        "sgx.enclave_size",
        "sgx.isvsvn",
        "loader.env.X",
        "libos.entrypoint",
    }
    assert {p.key for p in result.warnings} == {"sgx.nonpie_binary", "fs.mounts"}
    assert result.problems[: len(result.errors)] == result.errors


def test_check_manifest_accepts_a_path_and_reads_files(tmp_path: Path) -> None:
    path = tmp_path / "app.manifest"
    path.write_text(MIN)
    result = check_manifest(path, gramine=GRAMINE)
    assert result.ok and result.problems == () and result.manifest == parse(MIN)
    assert Manifest.from_path(path, gramine=GRAMINE) == parse(MIN)
    with pytest.raises(ManifestError, match="cannot read manifest"):
        check_manifest(tmp_path / "missing.manifest")


def test_from_path_refuses_non_utf8_and_oversized_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.manifest"
    bad.write_bytes(b'libos.entrypoint = "/\xff"\n')
    with pytest.raises(ManifestSyntaxError, match="UTF-8"):
        Manifest.from_path(bad)
    monkeypatch.setattr(parse_module, "MAX_MANIFEST_BYTES", 16)
    big = tmp_path / "big.manifest"
    big.write_text(MIN)
    with pytest.raises(ManifestSyntaxError, match="too large"):
        Manifest.from_path(big)
    with pytest.raises(ManifestSyntaxError, match="too large"):
        Manifest.from_toml(MIN)


def test_lone_surrogates_and_deep_nesting_are_syntax_errors() -> None:
    with pytest.raises(ManifestSyntaxError, match="surrogate"):
        Manifest.from_toml('libos.entrypoint = "/\ud800"\n')
    with pytest.raises(ManifestSyntaxError):
        Manifest.from_toml("x = " + "[" * 100_000 + "]" * 100_000 + "\n")


def test_passthrough_with_host_env_is_only_a_warning() -> None:
    m = parse(MIN + "loader.insecure__use_host_env = true\nloader.env.X = { passthrough = true }\n")
    assert [p.key for p in m.warnings] == ["loader.env.X"]


# --- effective argv and env ----------------------------------------------------------------------


def test_effective_argv() -> None:
    assert parse(MIN).effective_argv(["ignored"]) == ("/app",)
    assert parse(MIN + 'loader.argv = ["a", "b"]\n').effective_argv(["x"]) == ("a", "b")
    cmdline = parse(MIN + "loader.insecure__use_cmdline_argv = true\n")
    assert cmdline.effective_argv(["x", "y"]) == ("x", "y")
    assert cmdline.effective_argv() == ("/app",)
    src = parse(MIN + 'loader.argv_src_file = "file:argv"\n')
    assert src.effective_argv(["x"], argv_src_data=b"prog\0--v\0\0") == ("prog", "--v", "")
    with pytest.raises(ManifestError, match=r"loader\.argv_src_file"):
        src.effective_argv(["x"])


def test_effective_env() -> None:
    m = parse(
        MIN + 'loader.env.A = "1"\nloader.env.B = { value = "2" }\n'
        "loader.env.P = { passthrough = true }\nloader.env.Q = { passthrough = true }\n"
    )
    host = {"P": "host-p", "SECRET": "no"}
    assert m.effective_env(host) == {"A": "1", "B": "2", "P": "host-p"}
    both = parse(
        MIN + 'loader.insecure__use_host_env = true\nloader.env.A = "1"\n'
        'loader.env_src_file = "file:env"\n'
    )
    env = both.effective_env({"A": "host", "H": "h"}, env_src_data=b"A=file\0F=f=g\0")
    assert env == {"A": "1", "H": "h", "F": "f=g"}
    with pytest.raises(ManifestError, match="NAME=VALUE"):
        both.effective_env({}, env_src_data=b"novalue\0")
    with pytest.raises(ManifestError, match=r"loader\.env_src_file"):
        both.effective_env({})


def test_decode_serialized_strings() -> None:
    assert decode_serialized_strings(b"") == ()
    assert decode_serialized_strings(b"a\0\0b c\0") == ("a", "", "b c")
    assert decode_serialized_strings(b"\xff\0") == ("\udcff",)
    with pytest.raises(ManifestError, match="NUL"):
        decode_serialized_strings(b"a\0b")


# --- canonical form and TOML output ---------------------------------------------------------------

EXPANDED = MIN + f'sgx.trusted_files = [{{ uri = "file:a", sha256 = "{SHA_A}" }}]\n'


def test_canonical_bytes_are_sorted_compact_json() -> None:
    m = parse(EXPANDED)
    data = canonical_manifest_bytes(m)
    decoded = json.loads(data)
    assert data == json.dumps(decoded, sort_keys=True, separators=(",", ":")).encode()
    assert decoded["sgx"]["enclave_size"] == "256M"
    assert decoded["sgx"]["trusted_files"] == [{"uri": "file:a", "sha256": SHA_A}]
    assert decoded["loader"]["entrypoint"] == {"uri": "file:/opt/gramine/lib/libsysdb.so"}
    assert set(decoded) == {"fs", "libos", "loader", "sgx", "sys"}


def test_equivalent_spellings_have_the_same_canonical_bytes() -> None:
    a = parse(EXPANDED + 'sgx.enclave_size = "1G"\nloader.env.X = "v"\n')
    b = parse(
        EXPANDED.replace(SHA_A, SHA_A.upper())
        + 'sgx.enclave_size = "1024M"\nloader.env.X = { value = "v" }\n'
        'sgx.debug = false\nsgx.max_threads = 4\nloader.log_level = "error"\n'
        'sys.stack.size = "256K"\nsgx.cpu_features.mpx = "disabled"\n'
    )
    assert canonical_manifest_bytes(a) == canonical_manifest_bytes(b)


@pytest.mark.parametrize(
    "change",
    [
        "sgx.debug = true\n",
        "sgx.isvsvn = 1\n",
        'sgx.enclave_size = "512M"\n',
        'loader.argv = ["x"]\n',
        'loader.env.X = "v"\n',
        'sgx.allowed_files = ["file:o"]\n',
    ],
)
def test_any_semantic_change_changes_the_canonical_bytes(change: str) -> None:
    assert canonical_manifest_bytes(parse(EXPANDED)) != canonical_manifest_bytes(
        parse(EXPANDED + change)
    )


def test_mount_order_is_part_of_the_canonical_form() -> None:
    one = parse(
        'libos.entrypoint = "/a"\nfs.mounts = [{ path = "/a", uri = "file:a" }, '
        '{ path = "/b", uri = "file:b" }]\n'
    )
    two = parse(
        'libos.entrypoint = "/a"\nfs.mounts = [{ path = "/b", uri = "file:b" }, '
        '{ path = "/a", uri = "file:a" }]\n'
    )
    assert one.canonical_json() != two.canonical_json()


@pytest.mark.parametrize(
    "trusted",
    ['["file:a"]', '["file:dir/"]'],
)
def test_canonical_bytes_refuse_unexpanded_manifests(trusted: str) -> None:
    m = parse(MIN + f"sgx.trusted_files = {trusted}\n")
    assert not m.is_expanded
    with pytest.raises(
        ManifestError, match=r"sgx.trusted_files\[0\]: the manifest must be expanded"
    ):
        canonical_manifest_bytes(m)


def test_to_toml_round_trips_the_full_manifest() -> None:
    m = parse(FULL)
    text = m.to_toml()
    again = parse(text)
    assert again == m
    assert again.to_toml() == text
    assert 'enclave_size = "2G"' in text


def test_to_toml_escapes_strings() -> None:
    tricky = 'q"uote \\ back\nnew\ttab \x01 \x7f \x1f é 😀'
    data = {
        "libos": {"entrypoint": "/app"},
        "fs": {"mounts": []},
        "loader": {"env": {'K "x': tricky, "k.y": "1"}},
    }
    m = Manifest.from_dict(data, gramine=GRAMINE)
    assert m.loader.env == (EnvVar('K "x', tricky), EnvVar("k.y", "1"))
    text = m.to_toml()
    assert "\\u007F" in text and "\\u0001" in text and '"k.y" = "1"' in text
    assert parse(text) == m


# --- fuzzing -------------------------------------------------------------------------------------

KEY_PATHS = [
    "libos.entrypoint",
    "libos.check_invalid_pointers",
    "loader.entrypoint",
    "loader.entrypoint.uri",
    "loader.entrypoint.sha256",
    "loader.log_level",
    "loader.argv",
    "loader.argv_src_file",
    "loader.insecure__use_cmdline_argv",
    "loader.env",
    "loader.env.A",
    "loader.env.B.value",
    "loader.env.C.passthrough",
    "loader.env_src_file",
    "loader.uid",
    "fs.mounts",
    "fs.root",
    "fs.root.uri",
    "fs.start_dir",
    "fs.insecure__keys.k",
    "sys.stack.size",
    "sys.brk.max_size",
    "sys.fds.limit",
    "sys.allowed_ioctls",
    "sys.ioctl_structs.s",
    "sys.debug__mock_syscalls",
    "sys.enable_sigterm_injection",
    "sgx.debug",
    "sgx.edmm_enable",
    "sgx.enclave_size",
    "sgx.max_threads",
    "sgx.thread_num",
    "sgx.isvprodid",
    "sgx.isvsvn",
    "sgx.remote_attestation",
    "sgx.ra_client_spid",
    "sgx.trusted_files",
    "sgx.allowed_files",
    "sgx.file_check_policy",
    "sgx.preheat_enclave",
    "sgx.enable_stats",
    "sgx.require_avx",
    "sgx.cpu_features",
    "sgx.cpu_features.avx",
    "sgx.seal_key.flags_mask",
    "sgx.profile",
    "sgx.profile.enable",
    "sgx.trusted_files_cache_size",
    "sgx.nonpie_binary",
    "unknown",
    "sgx",
    "fs",
    "loader",
]
FIELD_NAMES = [
    "uri",
    "sha256",
    "path",
    "type",
    "value",
    "passthrough",
    "key_name",
    "request_code",
    "struct",
    "name",
    "return",
    "enable_recovery",
]
SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.datetimes(),
    st.text(max_size=12),
    st.sampled_from(
        [
            "256M",
            "1G",
            "300M",
            "file:/x",
            "file:a/",
            "dev:/d",
            "none",
            "dcap",
            "epid",
            "strict",
            "tmpfs",
            "encrypted",
            "chroot",
            "/abs",
            "a" * 64,
            "ab" * 16,
            "0x3",
            "_sgx_mrenclave",
            "untrusted_shm",
            "unspecified",
            "required",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=4)), children, max_size=4
        ),
    ),
    max_leaves=12,
)


def nest(pairs: dict[str, Any]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for dotted, value in pairs.items():
        node = root
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return root


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEY_PATHS), VALUES, max_size=10))
def test_fuzz_structured_documents_only_raise_manifest_errors(pairs: dict[str, Any]) -> None:
    data = nest(pairs)
    try:
        m = Manifest.from_dict(data, gramine=GRAMINE)
    except ManifestError as exc:
        assert isinstance(exc, ManifestValidationError)
        assert exc.problems and exc.problems[0].severity == "error"
        return
    again = Manifest.from_toml(m.to_toml(), gramine=GRAMINE)
    assert again.to_dict() == m.to_dict()


TOKENS = [
    *'[]{}=".,\n #\\0123456789abcdefilnorstuxz_-:/',
    "sgx.",
    "fs.mounts",
    "libos.entrypoint",
    "true",
    "'''",
    '"""',
    "\u0000",
    "\u007f",
    "é",
]
TOMLISH = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), TOMLISH))
def test_fuzz_text_only_raises_manifest_errors(text: str) -> None:
    result = check_manifest(text, gramine=GRAMINE)
    try:
        m = Manifest.from_toml(text, gramine=GRAMINE)
    except ManifestError as exc:
        assert isinstance(exc, ManifestValidationError)
        assert not result.ok and result.manifest is None
        return
    assert result.ok and result.manifest == m


ENV_NAME = st.text(
    alphabet=string.ascii_letters + string.digits + '_. -"é', min_size=1, max_size=8
).filter(lambda s: "=" not in s)
ENV_VALUE = st.text(max_size=20).filter(
    lambda s: "\0" not in s and not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
)


@settings(max_examples=150, deadline=None)
@given(
    size_exp=st.integers(min_value=12, max_value=45),
    threads=st.integers(min_value=1, max_value=1024),
    prodid=st.integers(min_value=0, max_value=65535),
    env=st.dictionaries(ENV_NAME, ENV_VALUE, max_size=5),
    argv=st.none() | st.lists(ENV_VALUE, max_size=4),
    debug=st.booleans(),
)
def test_fuzz_valid_manifests_round_trip_through_toml(
    size_exp: int,
    threads: int,
    prodid: int,
    env: dict[str, str],
    argv: list[str] | None,
    debug: bool,
) -> None:
    data: dict[str, Any] = {
        "libos": {"entrypoint": "/app"},
        "loader": {"env": env, **({"argv": argv} if argv is not None else {})},
        "fs": {"mounts": [{"path": "/lib", "uri": "file:/lib"}]},
        "sgx": {
            "enclave_size": format_size(1 << size_exp),
            "max_threads": threads,
            "isvprodid": prodid,
            "debug": debug,
        },
    }
    m = Manifest.from_dict(data, gramine=GRAMINE)
    assert m.sgx.enclave_size == 1 << size_exp
    assert Manifest.from_toml(m.to_toml(), gramine=GRAMINE) == m
