"""Gramine manifests: the :class:`Manifest`, its measurement bytes, and the checker.

A Gramine manifest is a TOML document that tells the library OS what to run (``libos.entrypoint``,
``loader.argv``, ``loader.env``), what the application may see (``fs.mounts``,
``sgx.trusted_files``, ``sgx.allowed_files``) and how the enclave is built (``sgx.enclave_size``,
``sgx.max_threads``, ``sgx.debug``, ``sgx.isvprodid``/``sgx.isvsvn``). Both runners read it: the
real ``gramine-sgx`` runner hands it to Gramine, the simulator enforces it itself and measures it
with :func:`canonical_manifest_bytes`.

The parser (rules, defaults and their sources: :mod:`golem_graphene.gramine._parse`) builds the
sections of :mod:`~.model`; :mod:`~.serialize` writes the canonical form and the TOML text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from golem_graphene.errors import ManifestError
from golem_graphene.gramine._parse import build, loads, read_text
from golem_graphene.gramine._syntax import found_text, key_segment
from golem_graphene.gramine.install import GramineInstall
from golem_graphene.gramine.model import FsConfig, LibosConfig, LoaderConfig, SgxConfig, SysConfig
from golem_graphene.gramine.problems import (
    ManifestProblem,
    ManifestSyntaxError,
    ManifestValidationError,
)
from golem_graphene.gramine.serialize import canonical_dict, toml_dumps

__all__ = [
    "Manifest",
    "ManifestCheck",
    "canonical_manifest_bytes",
    "check_manifest",
    "decode_serialized_strings",
]


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed, validated Gramine manifest with every default filled in.

    Build one with :meth:`from_toml` or :meth:`from_path` (or the template renderer); the
    constructor does not validate. ``warnings`` keeps the non-fatal findings (legacy spellings,
    EPID) and is not compared. Two manifests with equal :meth:`to_dict` describe the same enclave.
    """

    libos: LibosConfig
    loader: LoaderConfig
    # Frozen (immutable) sections, so every manifest may share one default instance.
    fs: FsConfig = FsConfig()  # noqa: RUF009
    sys: SysConfig = SysConfig()  # noqa: RUF009
    sgx: SgxConfig = SgxConfig()  # noqa: RUF009
    warnings: tuple[ManifestProblem, ...] = field(default=(), compare=False)

    # -- constructors --

    @classmethod
    def from_toml(cls, text: str, *, gramine: GramineInstall | None = None) -> Manifest:
        """Parse and validate manifest TOML text.

        ``gramine`` supplies the default ``loader.entrypoint`` (default:
        :func:`~.install.detect_gramine`). Raises :class:`ManifestSyntaxError` for text that is
        not TOML and :class:`ManifestValidationError` (with every problem) for a manifest that
        breaks a rule.
        """
        data = loads(text)
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
        return cls.from_toml(read_text(path), gramine=gramine)

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
            found.append(f'fs.insecure__keys.{key_segment(name)} = "..."')
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
                        found=found_text(item),
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
        return canonical_dict(self.libos, self.loader, self.fs, self.sys, self.sgx)

    def to_toml(self) -> str:
        """The canonical form as a TOML manifest (keys sorted) that Gramine >= 1.8 reads and
        :meth:`from_toml` parses back into an equal manifest."""
        return toml_dumps(self.to_dict())

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

    Stable for a given :data:`~.serialize.CANONICAL_FORMAT_VERSION`: JSON with keys sorted at
    every level, no whitespace, non-ASCII kept as UTF-8, arrays in manifest order. The simulator
    computes its MRENCLAVE as SHA-256(domain tag || these bytes), so the manifest must be
    expanded: a trusted file without a hash or a directory entry raises :class:`ManifestError`
    (measuring it would not bind the files' contents).
    """
    for index, tf in enumerate(manifest.sgx.trusted_files):
        if tf.is_directory or tf.sha256 is None:
            raise ManifestError(
                f"sgx.trusted_files[{index}]: the manifest must be expanded before it is measured",
                expected="a file URI with sha256",
                found=tf.uri,
            )
    return manifest.canonical_json().encode("utf-8")


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
        text = source if isinstance(source, str) else read_text(source)
        data = loads(text)
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


def _build(
    data: Mapping[str, Any], gramine: GramineInstall | None
) -> tuple[Manifest | None, list[ManifestProblem]]:
    """Parse ``data`` into its sections and assemble the manifest (None after an error)."""
    parts, problems = build(data, gramine)
    if parts is None:
        return None, problems
    manifest = Manifest(parts.libos, parts.loader, parts.fs, parts.sys, parts.sgx, parts.warnings)
    return manifest, problems
