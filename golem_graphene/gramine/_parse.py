"""The manifest parser: TOML text to the validated sections of :class:`~.manifest.Manifest`.

Strict and complete, because a manifest the simulator accepts must be one Gramine accepts, with
the same defaults. Reading goes text -> document (:func:`read_text`, :func:`loads`) ->
sections (:func:`build`, with the builders of :mod:`~._parse_core` and :mod:`~._parse_sgx`);
:class:`~.manifest.Manifest` assembles itself from the parts.

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
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from golem_graphene.errors import ManifestError
from golem_graphene.gramine._parse_core import build_fs, build_libos, build_loader, build_sys
from golem_graphene.gramine._parse_sgx import build_sgx
from golem_graphene.gramine._syntax import join_key
from golem_graphene.gramine._validation import Ctx, Table
from golem_graphene.gramine.install import GramineInstall
from golem_graphene.gramine.model import FsConfig, LibosConfig, LoaderConfig, SgxConfig, SysConfig
from golem_graphene.gramine.problems import ManifestProblem, ManifestSyntaxError
from golem_graphene.limits import MAX_MANIFEST_BYTES

# --- reading --------------------------------------------------------------------------------------


def read_text(path: str | os.PathLike[str]) -> str:
    """A manifest file as text: at most ``MAX_MANIFEST_BYTES``, UTF-8.

    Raises :class:`ManifestError` when it cannot be read, :class:`ManifestSyntaxError` when it
    is too large or not UTF-8.
    """
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


def loads(text: str) -> dict[str, Any]:
    """Decode manifest text as TOML; raises :class:`ManifestSyntaxError` for anything else."""
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


# --- building -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestParts:
    """The validated sections of one manifest, from which :class:`~.manifest.Manifest` is made."""

    libos: LibosConfig
    loader: LoaderConfig
    fs: FsConfig
    sys: SysConfig
    sgx: SgxConfig
    warnings: tuple[ManifestProblem, ...]


def build(
    data: Mapping[str, Any], gramine: GramineInstall | None
) -> tuple[ManifestParts | None, list[ManifestProblem]]:
    """Build every section of ``data``; the parts are None when any problem is an error.

    Returns the parts and every problem found (all warnings when the parts are set).
    """
    ctx = Ctx()
    root = Table(ctx, data, "")
    libos = build_libos(ctx, root)
    loader = build_loader(ctx, root, gramine)
    fs = build_fs(ctx, root)
    sys_config = build_sys(ctx, root)
    sgx = build_sgx(ctx, root)
    root.finish()
    if loader is not None:
        _cross_checks(ctx, loader, sgx)
    if ctx.failed or libos is None or loader is None:
        return None, ctx.problems
    warnings = tuple(ctx.problems)
    return ManifestParts(libos, loader, fs, sys_config, sgx, warnings), ctx.problems


def _cross_checks(ctx: Ctx, loader: LoaderConfig, sgx: SgxConfig) -> None:
    if loader.insecure__use_host_env:
        for var in loader.env:
            if var.passthrough:
                ctx.warn(
                    join_key("loader.env", var.name),
                    "passthrough has no effect with loader.insecure__use_host_env = true",
                )
    if sgx.remote_attestation != "epid" and sgx.ra_client_spid:
        ctx.warn("sgx.ra_client_spid", "only used by EPID attestation; ignored")
