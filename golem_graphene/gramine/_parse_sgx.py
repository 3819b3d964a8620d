"""Section builder of the manifest parser for ``sgx``: enclave, attestation, trusted files.

:func:`build_sgx` reads the ``sgx`` table (with its legacy spellings) like the builders of
:mod:`~._parse_core`; the rules are listed in :mod:`golem_graphene.gramine._parse`.
"""

from __future__ import annotations

from typing import Final, cast, get_args

from golem_graphene.gramine._syntax import U16_MAX, U32_MAX
from golem_graphene.gramine._validation import MISSING, Ctx, Table, check_hex, check_mask, check_uri
from golem_graphene.gramine.model import (
    DEFAULT_ENCLAVE_SIZE_NO_EDMM,
    DEFAULT_ENCLAVE_SIZE_WITH_EDMM,
    DEFAULT_MAX_THREADS,
    DEFAULT_SEAL_FLAGS_MASK,
    DEFAULT_SEAL_MISC_MASK,
    DEFAULT_SEAL_XFRM_MASK,
    CpuFeature,
    CpuFeatures,
    CpuFeatureStrict,
    FileCheckPolicy,
    RemoteAttestation,
    SealKeyMasks,
    SgxConfig,
    SgxProfile,
    TrustedFile,
)
from golem_graphene.gramine.sizes import parse_size

_REMOTE_ATTESTATION: Final = get_args(RemoteAttestation)
_FILE_CHECK_POLICIES: Final = get_args(FileCheckPolicy)
_CPU_FEATURE: Final = get_args(CpuFeature)
_CPU_FEATURE_STRICT: Final = get_args(CpuFeatureStrict)
_PROFILE_ENABLE: Final = ("none", "main", "all")
_PROFILE_MODE: Final = ("aex", "ocall_inner", "ocall_outer")
_REQUIRE_CPU_KEYS: Final = ("avx", "avx512", "amx", "mpx", "pkru")


def build_sgx(ctx: Ctx, root: Table) -> SgxConfig:
    table = root.get_table("sgx")
    if table is None:
        table = Table(ctx, {}, "sgx")
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

    max_threads = table.get_int("max_threads", DEFAULT_MAX_THREADS, lo=1, hi=U32_MAX)
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
            max_threads = table.get_int("thread_num", DEFAULT_MAX_THREADS, lo=1, hi=U32_MAX)

    isvprodid = table.get_int("isvprodid", 0, lo=0, hi=U16_MAX)
    isvsvn = table.get_int("isvsvn", 0, lo=0, hi=U16_MAX)
    remote_attestation = _build_remote_attestation(ctx, table)
    spid = table.get_str("ra_client_spid") if table.has("ra_client_spid") else None
    table.take("ra_client_spid")
    if spid:
        spid = check_hex(ctx, "sgx.ra_client_spid", spid, digits=32, what="an SPID")
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
        insecure__rpc_thread_num=table.get_int("insecure__rpc_thread_num", 0, lo=0, hi=U32_MAX),
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


def _build_remote_attestation(ctx: Ctx, table: Table) -> RemoteAttestation:
    value = table.data.get("remote_attestation", MISSING)
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


def _build_trusted_files(ctx: Ctx, table: Table) -> tuple[TrustedFile, ...]:
    value = table.take("trusted_files")
    if value is MISSING:
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
            uri = check_uri(ctx, key, item)
            if uri is not None:
                result.append(TrustedFile(uri))
            continue
        if not isinstance(item, dict):
            ctx.wrong_type(key, 'a "file:..." string or a table { uri, sha256 }', item)
            continue
        entry = Table(ctx, item, key)
        if not entry.has("uri"):
            entry.take("uri")
            ctx.error(entry.key("uri"), "is required", expected="a file: URI")
            uri = None
        else:
            uri = check_uri(ctx, entry.key("uri"), entry.take("uri"))
        raw_sha = entry.take("sha256")
        sha = (
            None
            if raw_sha is MISSING
            else check_hex(ctx, entry.key("sha256"), raw_sha, digits=64, what="a SHA-256")
        )
        entry.finish()
        if uri is None or (raw_sha is not MISSING and sha is None):
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


def _build_allowed_files(ctx: Ctx, table: Table) -> tuple[str, ...]:
    value = table.take("allowed_files")
    if value is MISSING:
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
        check_uri(ctx, f"sgx.allowed_files[{i}]", item, ("file:", "dev:"))
        for i, item in enumerate(value)
    ]
    return tuple(uri for uri in uris if uri is not None)


def _build_cpu_features(ctx: Ctx, sgx: Table) -> CpuFeatures:
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


def _build_seal_key(ctx: Ctx, sgx: Table) -> SealKeyMasks:
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
        parsed = None if raw is MISSING else check_mask(ctx, table.key(name), raw, bits=bits)
        masks[name] = default if parsed is None else parsed
    table.finish()
    return SealKeyMasks(**masks)


def _build_profile(ctx: Ctx, sgx: Table, debug: bool) -> SgxProfile | None:
    table = sgx.get_table("profile")
    if table is None:
        return None
    enable = table.get_enum("enable", _PROFILE_ENABLE, "none") if table.has("enable") else None
    mode = table.get_enum("mode", _PROFILE_MODE, "aex") if table.has("mode") else None
    with_stack = table.get_bool("with_stack", False) if table.has("with_stack") else None
    frequency = table.get_opt_int("frequency", lo=1, hi=U32_MAX)
    table.take("enable")
    table.take("mode")
    table.take("with_stack")
    table.finish()
    if enable not in (None, "none") and not debug:
        ctx.warn(
            "sgx.profile.enable", "SGX profiling works only in debug enclaves (sgx.debug = true)"
        )
    return SgxProfile(enable, mode, with_stack, frequency)
