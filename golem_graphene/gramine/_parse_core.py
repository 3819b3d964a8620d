"""Section builders of the manifest parser for ``libos``, ``loader``, ``fs`` and ``sys``.

Each builder reads its table through :class:`~._validation.Table`, records every problem in the
:class:`~._validation.Ctx` and returns the model section (None when a required part is broken).
The rules are listed in :mod:`golem_graphene.gramine._parse`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, cast, get_args

from golem_graphene.gramine._syntax import U32_MAX, U64_MAX, join_key
from golem_graphene.gramine._validation import (
    MISSING,
    Ctx,
    Table,
    check_hex,
    check_plain_data,
    check_str,
    check_uri,
)
from golem_graphene.gramine.install import GramineInstall, detect_gramine
from golem_graphene.gramine.model import (
    DEFAULT_FDS_LIMIT,
    AllowedIoctl,
    EnvVar,
    FsConfig,
    FsRoot,
    LibosConfig,
    LoaderConfig,
    LoaderEntrypoint,
    LogLevel,
    MockSyscall,
    Mount,
    MountType,
    SysConfig,
)

_LOG_LEVELS: Final = get_args(LogLevel)
_MOUNT_TYPES: Final = get_args(MountType)
_SPECIAL_KEY_NAMES: Final = ("_sgx_mrenclave", "_sgx_mrsigner")
_MAX_ENCRYPTED_PATH_BYTES: Final = 512


def build_libos(ctx: Ctx, root: Table) -> LibosConfig | None:
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


def build_loader(ctx: Ctx, root: Table, gramine: GramineInstall | None) -> LoaderConfig | None:
    table = root.get_table("loader")
    if table is None:
        if root.has("loader"):
            return None
        table = Table(ctx, {}, "loader")

    entry = _build_loader_entrypoint(ctx, table, gramine)
    log_level = cast(LogLevel, table.get_enum("log_level", _LOG_LEVELS, "error"))
    log_file = table.get_str("log_file", nonempty=True)

    argv: tuple[str, ...] | None = None
    raw_argv = table.get_list("argv")
    if raw_argv is not None:
        items = [check_str(ctx, f"loader.argv[{i}]", item) for i, item in enumerate(raw_argv)]
        if all(item is not None for item in items):
            argv = tuple(cast(list[str], items))
    raw_src = table.take("argv_src_file")
    argv_src_file = None if raw_src is MISSING else check_uri(ctx, "loader.argv_src_file", raw_src)
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
        None if raw_env_src is MISSING else check_uri(ctx, "loader.env_src_file", raw_env_src)
    )
    use_host_env = table.get_bool("insecure__use_host_env", False)
    disable_aslr = table.get_bool("insecure__disable_aslr", False)
    uid = table.get_int("uid", 0, lo=0, hi=U32_MAX)
    gid = table.get_int("gid", 0, lo=0, hi=U32_MAX)
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
    ctx: Ctx, table: Table, gramine: GramineInstall | None
) -> LoaderEntrypoint | None:
    value = table.take("entrypoint")
    if value is MISSING:
        return LoaderEntrypoint((gramine or detect_gramine()).libos_uri)
    if isinstance(value, str):
        ctx.warn(
            "loader.entrypoint",
            "the string form is Gramine <= 1.7 syntax; since v1.8 it is loader.entrypoint.uri "
            "(and it can be omitted)",
        )
        uri = check_uri(ctx, "loader.entrypoint", value)
        return None if uri is None else LoaderEntrypoint(uri)
    if not isinstance(value, dict):
        ctx.wrong_type("loader.entrypoint", "a table { uri, sha256 }", value)
        return None
    sub = Table(ctx, value, "loader.entrypoint")
    raw_uri = sub.take("uri")
    uri = (
        LoaderEntrypoint((gramine or detect_gramine()).libos_uri).uri
        if raw_uri is MISSING
        else check_uri(ctx, "loader.entrypoint.uri", raw_uri)
    )
    sha = sub.take("sha256")
    sha256 = (
        None
        if sha is MISSING
        else check_hex(ctx, "loader.entrypoint.sha256", sha, digits=64, what="a SHA-256")
    )
    sub.finish()
    if uri is None or (sha is not MISSING and sha256 is None):
        return None
    return LoaderEntrypoint(uri, sha256)


def _build_env(ctx: Ctx, loader: Table) -> tuple[EnvVar, ...]:
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
            text = check_str(ctx, key, value)
            if text is not None:
                result.append(EnvVar(name, text))
            continue
        if not isinstance(value, dict):
            ctx.wrong_type(key, 'a string, { value = "..." } or { passthrough = true }', value)
            continue
        entry = Table(ctx, value, key)
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
            text = check_str(ctx, join_key(key, "value"), raw_value)
            if text is not None:
                result.append(EnvVar(name, text))
        elif raw_pass is True:
            result.append(EnvVar(name, None, passthrough=True))
        elif raw_pass is False:
            ctx.error(
                join_key(key, "passthrough"),
                "passthrough = false is prohibited (Gramine refuses deny lists)",
                expected="true",
                found=False,
            )
        else:
            ctx.wrong_type(join_key(key, "passthrough"), "the boolean true", raw_pass)
    return tuple(result)


def _build_mount_like(
    ctx: Ctx, value: object, key: str, *, with_path: bool
) -> Mount | FsRoot | None:
    if not isinstance(value, dict):
        ctx.wrong_type(key, "a table { type, path, uri }", value)
        return None
    table = Table(ctx, value, key)
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
        if raw_uri is not MISSING and check_str(ctx, table.key("uri"), raw_uri) is None:
            ok = False  # Gramine ignores the URI of a tmpfs mount, but it must still be a string
    elif raw_uri is MISSING:
        ctx.error(table.key("uri"), f"is required for a {mount_type} mount", expected="a URI")
        ok = False
    else:
        scheme = ("dev:",) if mount_type == "untrusted_shm" else ("file:",)
        uri = check_uri(ctx, table.key("uri"), raw_uri, scheme)
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


def build_fs(ctx: Ctx, root: Table) -> FsConfig:
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
            hex_key = check_hex(ctx, key_table.key(name), value, digits=32, what="a 16-byte key")
            if hex_key is not None:
                keys.append((name, hex_key))
    table.finish()
    return FsConfig(tuple(mounts), fs_root, start_dir, tuple(keys))


def build_sys(ctx: Ctx, root: Table) -> SysConfig:
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
        frozen = check_plain_data(ctx, "sys.ioctl_structs", dict(struct_table.data))
        structs = frozen if isinstance(frozen, MappingProxyType) else MappingProxyType({})

    ioctls: list[AllowedIoctl] = []
    for index, item in enumerate(table.get_list("allowed_ioctls") or ()):
        key = f"sys.allowed_ioctls[{index}]"
        if not isinstance(item, dict):
            ctx.wrong_type(key, "a table { request_code, struct }", item)
            continue
        entry = Table(ctx, item, key)
        if not entry.has("request_code"):
            entry.take("request_code")
            ctx.error(entry.key("request_code"), "is required", expected="an integer")
            code = None
        else:
            code = entry.get_opt_int("request_code", lo=0, hi=U64_MAX)
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
        entry = Table(ctx, item, key)
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
