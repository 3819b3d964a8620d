"""The canonical form of a manifest (a plain dict) and the TOML writer.

The canonical form (:meth:`~.manifest.Manifest.to_dict`, what
:func:`~.manifest.canonical_manifest_bytes` measures as sorted compact JSON) is the manifest with
every documented default written out, legacy spellings replaced by current ones, sizes as
normalised size strings and trusted files as ``{uri, sha256}`` tables, in the array order the
author chose (order is meaningful for mounts and is part of the measured text in real Gramine).
Any change to it changes every measurement: bump :data:`CANONICAL_FORMAT_VERSION` with it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final

from golem_graphene.errors import ManifestError
from golem_graphene.gramine._syntax import BARE_KEY_RE
from golem_graphene.gramine.model import (
    FsConfig,
    FsRoot,
    LibosConfig,
    LoaderConfig,
    Mount,
    SgxConfig,
    SysConfig,
)
from golem_graphene.gramine.sizes import format_size

__all__ = ["CANONICAL_FORMAT_VERSION", "canonical_dict", "toml_dumps"]

CANONICAL_FORMAT_VERSION: Final = 1
"""Bumped whenever :meth:`Manifest.to_dict` changes; callers put it into their domain tags."""


# --- canonical dict -------------------------------------------------------------------------------


def canonical_dict(
    libos: LibosConfig, loader: LoaderConfig, fs: FsConfig, sys_config: SysConfig, sgx: SgxConfig
) -> dict[str, Any]:
    """The canonical expanded form of a manifest's sections (see the module docstring)."""
    return {
        "fs": _fs_to_dict(fs),
        "libos": {
            "check_invalid_pointers": libos.check_invalid_pointers,
            "entrypoint": libos.entrypoint,
        },
        "loader": _loader_to_dict(loader),
        "sgx": _sgx_to_dict(sgx),
        "sys": _sys_to_dict(sys_config),
    }


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
    if _PLAIN_STRING.fullmatch(text):  # most strings (every trusted file's URI): nothing to escape
        return '"' + text + '"'
    out = []
    for char in text:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


_PLAIN_STRING = re.compile(r'[^"\\\x00-\x1f\x7f]*')


@functools.cache
def _toml_key(name: str) -> str:  # the same few keys, thousands of times (trusted files)
    return name if BARE_KEY_RE.fullmatch(name) else _toml_string(name)


def _toml_inline(value: Any) -> str:
    if type(value) is str:  # most values: every trusted file's URI and hash
        return _toml_string(value)
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


def toml_dumps(data: Mapping[str, Any]) -> str:
    """``data`` as a TOML document: keys sorted, scalars before sub-tables, arrays one item a
    line. Values are booleans, integers, strings, arrays and tables; anything else raises
    :class:`ManifestError`."""
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
