"""``golem-graphene manifest``: render, check and expand Gramine manifests.

``render TEMPLATE [-D NAME=VALUE]... [-o OUT]`` renders a Jinja template like ``gramine-manifest``
and checks the result (``--no-check`` skips that); ``--expand`` also measures the trusted files.
``check MANIFEST [--json]`` validates a manifest against the rules Gramine documents.
``expand MANIFEST [--base DIR] [-o OUT]`` measures trusted files (SHA-256) like gramine-manifest
>= 1.8 and writes the expanded, canonical manifest.

Human output goes to stderr: ``OK``, or one ``FAIL: <key>: <rule>`` line per error (warnings as
``warning: <key>: <rule>``). Exit status: 0 success, 1 invalid manifest or template, 2 usage
errors (missing files, bad ``-D``, refusing to overwrite an existing output).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from golem_graphene.errors import ConfigError, UsageError
from golem_graphene.gramine.install import detect_gramine
from golem_graphene.gramine.manifest import Manifest, ManifestCheck, check_manifest
from golem_graphene.gramine.problems import ManifestProblem
from golem_graphene.gramine.sizes import format_size
from golem_graphene.gramine.template import TemplateError, parse_define, render_template
from golem_graphene.gramine.trusted_files import expand_trusted_files
from golem_graphene.limits import MAX_MANIFEST_TEMPLATE_BYTES


def register(sub: Any) -> None:
    """Add the ``manifest`` command with its ``render``, ``check`` and ``expand`` actions."""
    p = sub.add_parser(
        "manifest",
        help="render, check and expand Gramine manifests",
        description=__doc__,
        epilog="example:\n  golem-graphene manifest check agent.manifest\n",
    )
    actions = p.add_subparsers(dest="manifest_action", metavar="ACTION")
    actions.required = True

    r = actions.add_parser(
        "render",
        help="render a manifest template (like gramine-manifest)",
        description="Render a Jinja manifest template as gramine-manifest does, and check it.",
        epilog="example:\n  golem-graphene manifest render native/agent.manifest.template "
        "-D entrypoint=/usr/bin/python3 -o agent.manifest\n",
    )
    r.add_argument("template", metavar="TEMPLATE", help="Jinja manifest template")
    r.add_argument(
        "-D",
        "--define",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template variable (repeatable); NAME alone sets it to true",
    )
    r.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    r.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    r.add_argument("--no-check", action="store_true", help="do not validate the rendered manifest")
    r.add_argument(
        "--expand",
        action="store_true",
        help="also measure trusted files and write the expanded canonical manifest",
    )
    _add_expand_options(r)
    r.set_defaults(func=_checked(run_render))

    c = actions.add_parser(
        "check",
        help="validate a manifest",
        description="Check a rendered manifest against the rules Gramine documents.",
        epilog="example:\n  golem-graphene manifest check agent.manifest --json\n",
    )
    c.add_argument("manifest", metavar="MANIFEST", help="rendered manifest (TOML)")
    c.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    c.set_defaults(func=_checked(run_check))

    e = actions.add_parser(
        "expand",
        help="measure trusted files (SHA-256) into the manifest",
        description="Measure every trusted file (SHA-256) and write the expanded, canonical "
        "manifest.",
        epilog="example:\n  golem-graphene manifest expand agent.manifest --base . "
        "-o agent.manifest.expanded\n",
    )
    e.add_argument("manifest", metavar="MANIFEST", help="rendered manifest (TOML)")
    e.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    e.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    _add_expand_options(e)
    e.set_defaults(func=_checked(run_expand))


def _add_expand_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--base",
        metavar="DIR",
        default=".",
        help="directory relative file: URIs are resolved against (default: current directory)",
    )
    p.add_argument(
        "--skip-loader-entrypoint",
        action="store_true",
        help="do not measure loader.entrypoint (libsysdb.so), e.g. where Gramine is absent",
    )


def _checked(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A template or manifest that does not render or check is this command's verdict (exit 1,
    ``FAIL: <code>: ...``), not a usage mistake, although its errors are ConfigErrors."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ConfigError as exc:
            sys.stderr.write(f"FAIL: {exc.code}: {exc.describe()}\n")
            if getattr(args, "json", False):
                sys.stdout.write(json.dumps({"verdict": "fail", "error": exc.to_dict()}) + "\n")
            return 1

    return run


# --- render ------------------------------------------------------------------------------------


def run_render(args: argparse.Namespace) -> int:
    """Render TEMPLATE; write it (or its expanded form) when it passes the check."""
    if args.expand and args.no_check:
        raise UsageError("--expand needs the check; drop --no-check")
    variables: dict[str, object] = {}
    for item in args.define:
        try:
            name, value = parse_define(item)
        except TemplateError as exc:
            raise UsageError(exc.message, expected=exc.expected, found=exc.found) from exc
        variables[name] = value
    _refuse_overwrite(args.output, args.force)
    template = _read_text(args.template, "template", MAX_MANIFEST_TEMPLATE_BYTES)
    install = detect_gramine()
    text = render_template(template, variables, gramine=install, name=args.template)
    if not args.no_check:
        result = check_manifest(text, gramine=install)
        if not _report(result):
            return 1
        if args.expand:
            assert result.manifest is not None
            text = _expand(result.manifest, args).to_toml()
    _write(args.output, text)
    sys.stderr.write(f"OK: wrote {args.output}\n" if args.output else "OK\n")
    return 0


# --- check -------------------------------------------------------------------------------------


def run_check(args: argparse.Namespace) -> int:
    """Check MANIFEST; print the verdict (and JSON with --json)."""
    path = Path(args.manifest)
    if not path.is_file():
        raise UsageError(f"cannot read the manifest {args.manifest!r}: no such file")
    result = check_manifest(path)
    ok = _report(result)
    if args.json:
        out: dict[str, Any] = {
            "verdict": "ok" if ok else "fail",
            "manifest": str(path),
            "problems": [p.to_dict() for p in result.problems],
            **_summary(result.manifest),
        }
        sys.stdout.write(json.dumps(out) + "\n")
    return 0 if ok else 1


def _summary(manifest: Manifest | None) -> dict[str, Any]:
    if manifest is None:
        keys = (
            "entrypoint",
            "enclave_size",
            "enclave_size_bytes",
            "max_threads",
            "debug",
            "edmm_enable",
            "remote_attestation",
            "isvprodid",
            "isvsvn",
            "trusted_files",
            "trusted_files_hashed",
            "allowed_files",
            "mounts",
            "expanded",
            "insecure",
        )
        return dict.fromkeys(keys)
    sgx = manifest.sgx
    return {
        "entrypoint": manifest.libos.entrypoint,
        "enclave_size": format_size(sgx.enclave_size),
        "enclave_size_bytes": sgx.enclave_size,
        "max_threads": sgx.max_threads,
        "debug": sgx.debug,
        "edmm_enable": sgx.edmm_enable,
        "remote_attestation": sgx.remote_attestation,
        "isvprodid": sgx.isvprodid,
        "isvsvn": sgx.isvsvn,
        "trusted_files": len(sgx.trusted_files),
        "trusted_files_hashed": sum(1 for tf in sgx.trusted_files if tf.sha256 is not None),
        "allowed_files": len(sgx.allowed_files),
        "mounts": len(manifest.fs.mounts),
        "expanded": manifest.is_expanded,
        "insecure": list(manifest.insecure_options()),
    }


# --- expand ------------------------------------------------------------------------------------


def run_expand(args: argparse.Namespace) -> int:
    """Measure the trusted files of MANIFEST and write the expanded canonical manifest."""
    path = Path(args.manifest)
    if not path.is_file():
        raise UsageError(f"cannot read the manifest {args.manifest!r}: no such file")
    _refuse_overwrite(args.output, args.force)
    result = check_manifest(path)
    if not _report(result, quiet_ok=True):
        return 1
    assert result.manifest is not None
    expanded = _expand(result.manifest, args)
    _write(args.output, expanded.to_toml())
    count = len(expanded.sgx.trusted_files)
    target = f": wrote {args.output}" if args.output else ""
    sys.stderr.write(f"OK: {count} trusted files measured{target}\n")
    return 0


def _expand(manifest: Manifest, args: argparse.Namespace) -> Manifest:
    base = Path(args.base)
    if not base.is_dir():
        raise UsageError(f"--base {args.base!r} is not a directory")
    return expand_trusted_files(
        manifest, base, hash_loader_entrypoint=not args.skip_loader_entrypoint
    )


# --- helpers -----------------------------------------------------------------------------------


def _report(result: ManifestCheck, *, quiet_ok: bool = False) -> bool:
    """Print warnings and errors on stderr; ``OK`` unless ``quiet_ok``. True when no error."""
    for problem in result.warnings:
        sys.stderr.write(f"warning: {problem.describe()}\n")
    for problem in result.errors:
        sys.stderr.write(f"FAIL: {_line(problem)}\n")
    if result.ok and not quiet_ok:
        sys.stderr.write("OK\n")
    return result.ok


def _line(problem: ManifestProblem) -> str:
    return problem.describe().replace("\n", " ")


def _read_text(path: str, what: str, limit: int) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path!r}: {exc.strerror or exc}") from exc
    if len(raw) > limit:
        raise TemplateError(f"{path}: {what} too large", expected=f"<= {limit} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{path}: {what} is not UTF-8 (byte {exc.start})") from exc


def _refuse_overwrite(output: str | None, force: bool) -> None:
    if output is not None and not force and os.path.lexists(output):
        raise UsageError(f"{output!r} exists; pass --force to overwrite it")


def _write(output: str | None, text: str) -> None:
    """Write to stdout, or atomically to ``output`` (temporary file, then rename)."""
    if output is None:
        sys.stdout.write(text)
        return
    target = Path(output)
    directory = target.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise UsageError(f"cannot write {output!r}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"cannot write {output!r}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
