"""Render Gramine manifest templates like ``gramine-manifest``.

``gramine-manifest [-D NAME=VALUE]... TEMPLATE`` runs Jinja with ``StrictUndefined``,
``keep_trailing_newline`` and no autoescaping over a template whose globals are (source:
``python/graminelibos/gen_jinja_env.py`` and ``Documentation/manpages/gramine-manifest.rst``):

* ``gramine.libos`` (``<pkglibdir>/libsysdb.so``), ``gramine.pkglibdir`` and
  ``gramine.runtimedir(libc='glibc')`` (also usable as ``{{ gramine.runtimedir }}`` and with
  ``/``); values come from the local install when there is one, else from the Debian paths
  (``/usr/lib/x86_64-linux-gnu/gramine``), see :func:`~.install.detect_gramine`;
* ``python.stdlib``, ``platstdlib``, ``purelib``, ``distlib`` (Debian's
  ``/usr/lib/python3/dist-packages`` layout), ``get_config_var``, ``ext_suffix``, ``get_path``,
  ``get_paths``, ``implementation`` and ``get_sys_path(interpreter, include_nonexisting=False)``
  (runs the interpreter and yields :class:`pathlib.Path` entries, so ``path.is_dir()`` works);
* ``env`` (the environment: ``env.HOME``, ``env.get('EDMM', '0')``) and ``ldd(*executables)``;
* every ``-D NAME=VALUE`` as a string variable (``-D NAME`` alone gives ``True``, like
  gramine-manifest's click callback).

Every template of ``tests/vectors/gramine-manifests`` renders with this (tests prove it).
Differences from gramine-manifest, and why:

* The ``python.*`` paths come from the interpreter running golem-graphene (often a virtual
  environment: ``purelib`` is then the venv's site-packages), not from ``/usr/bin/python3``;
  ``get_sys_path`` runs the interpreter the template names, exactly like gramine-manifest.
* The SGX constants gramine-manifest adds from ``_graminelibos_offsets`` (only when Gramine with
  SGX is installed) are not provided: no published template uses them and they describe a
  specific Gramine build.
* Templates run in Jinja's immutable sandbox (no access to Python internals or mutating
  methods; ``range`` limited to 100,000 items; ``**`` bounded) and the rendered text is limited
  to ``MAX_MANIFEST_BYTES``. Templates are still build inputs, trusted like a Makefile: a hostile
  template can burn CPU and memory, and ``get_sys_path``/``ldd`` run programs (pass
  ``allow_subprocess=False`` to forbid that). Render untrusted templates in a confined process.
* ``env`` is the mapping the caller passes (``os.environ`` by default), which also becomes the
  environment of the programs ``get_sys_path``/``ldd`` start, so renders can be reproducible.

Trusted files are measured afterwards, by :mod:`~.trusted_files`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from golem_graphene.errors import ManifestError
from golem_graphene.gramine.install import GramineInstall, detect_gramine
from golem_graphene.gramine.manifest import Manifest
from golem_graphene.limits import (
    MAX_MANIFEST_BYTES,
    MAX_MANIFEST_TEMPLATE_BYTES,
    MAX_TEMPLATE_REPEAT,
    TEMPLATE_SUBPROCESS_TIMEOUT_S,
)

__all__ = [
    "TemplateError",
    "parse_define",
    "render_manifest",
    "render_template",
    "template_globals",
]

_TEMPLATE_FILENAME: Final = "<template>"


class TemplateError(ManifestError):
    """A template could not be rendered: bad syntax, an undefined variable, a failing helper.

    The message says where (``TEMPLATE:LINE``) and what; ``variable`` names the undefined
    variable when that is the cause.
    """

    def __init__(
        self,
        message: str,
        *,
        expected: object = None,
        found: object = None,
        variable: str | None = None,
    ) -> None:
        self.variable = variable
        super().__init__(message, expected=expected, found=found)


# --- -D variables ------------------------------------------------------------------------------


def parse_define(text: str) -> tuple[str, str | bool]:
    """Parse one ``-D`` argument: ``NAME=VALUE`` gives ``(NAME, VALUE)``, ``NAME`` gives
    ``(NAME, True)`` (gramine-manifest's behaviour).

    Raises :class:`TemplateError` when NAME is not a valid template identifier, since such a
    variable could never be referenced.
    """
    name, sep, value = text.partition("=")
    if not name.isidentifier():
        raise TemplateError(
            "-D: variable name must be an identifier",
            expected="NAME=VALUE with NAME like log_level",
            found=text,
        )
    return (name, value) if sep else (name, True)


# --- template globals --------------------------------------------------------------------------


class _Runtimedir:
    """``gramine.runtimedir``: callable with ``libc``, printable, and joinable with ``/``."""

    def __init__(self, install: GramineInstall) -> None:
        self._install = install

    def __call__(self, libc: str = "glibc") -> Path:
        return self._install.runtimedir(libc)

    def __str__(self) -> str:
        return str(self())

    def __truediv__(self, other: str) -> Path:
        return self() / other


def _run_helper(args: Sequence[str], environ: Mapping[str, str], what: str) -> bytes:
    try:
        result = subprocess.run(  # argv list, no shell; the template author names the program
            list(args),
            env=dict(environ),
            capture_output=True,
            timeout=TEMPLATE_SUBPROCESS_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TemplateError(
            f"{what}: timed out", expected=f"< {TEMPLATE_SUBPROCESS_TIMEOUT_S} s", found=args[0]
        ) from exc
    except OSError as exc:
        raise TemplateError(f"{what}: cannot run {args[0]}: {exc.strerror or exc}") from exc
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip()[:200]
        raise TemplateError(
            f"{what}: {args[0]} failed with status {result.returncode}",
            expected="exit status 0",
            found=detail or result.returncode,
        )
    if len(result.stdout) > MAX_MANIFEST_BYTES:
        raise TemplateError(f"{what}: output too large", expected=f"<= {MAX_MANIFEST_BYTES} B")
    return result.stdout


def _python_namespace(environ: Mapping[str, str], allow_subprocess: bool) -> dict[str, Any]:
    def get_sys_path(
        interpreter: str | os.PathLike[str], include_nonexisting: bool = False
    ) -> list[Path]:
        """Run ``interpreter`` and return its ``sys.path`` (non-empty entries; existing only)."""
        if not allow_subprocess:
            raise TemplateError(
                "python.get_sys_path(): running programs is disabled for this render",
                expected="allow_subprocess=True",
            )
        code = "import sys; sys.stdout.write('\\0'.join(p for p in sys.path if p))"
        out = _run_helper([os.fspath(interpreter), "-c", code], environ, "python.get_sys_path()")
        paths = [Path(os.fsdecode(part)) for part in out.split(b"\0") if part]
        return [p for p in paths if include_nonexisting or p.exists()]

    paths = sysconfig.get_paths()
    distlib = Path(
        sysconfig.get_path("stdlib", vars={"py_version_short": str(sys.version_info[0])})
    )
    return {
        "stdlib": Path(paths["stdlib"]),
        "platstdlib": Path(paths["platstdlib"]),
        "purelib": Path(paths["purelib"]),
        "distlib": distlib / "dist-packages",
        "get_config_var": sysconfig.get_config_var,
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        "get_path": sysconfig.get_path,
        "get_paths": sysconfig.get_paths,
        "implementation": sys.implementation,
        "get_sys_path": get_sys_path,
    }


def _ldd_function(environ: Mapping[str, str], allow_subprocess: bool) -> Any:
    def ldd(*executables: str | os.PathLike[str]) -> list[str]:
        """The libraries ``executables`` link to (absolute paths, each once, sorted)."""
        if not allow_subprocess:
            raise TemplateError(
                "ldd(): running programs is disabled for this render",
                expected="allow_subprocess=True",
            )
        if not executables:
            return []
        out = _run_helper(["ldd", *(os.fspath(e) for e in executables)], environ, "ldd()")
        found: set[str] = set()
        for line in out.decode("utf-8", "replace").splitlines():
            tokens = line.split()
            if len(tokens) >= 3 and tokens[1] == "=>" and tokens[2].startswith("/"):
                found.add(tokens[2])
            elif tokens and tokens[0].startswith("/"):
                found.add(tokens[0])
        return sorted(found)

    return ldd


def template_globals(
    *,
    gramine: GramineInstall | None = None,
    environ: Mapping[str, str] | None = None,
    allow_subprocess: bool = True,
) -> dict[str, Any]:
    """The globals a template sees (``gramine``, ``python``, ``env``, ``ldd``), as a dict.

    Exposed so callers (and tests) can see exactly which values a render will use.
    """
    install = gramine or detect_gramine()
    env = dict(os.environ if environ is None else environ)
    return {
        "gramine": {
            "libos": install.libos,
            "pkglibdir": install.pkglibdir,
            "runtimedir": _Runtimedir(install),
        },
        "python": _python_namespace(env, allow_subprocess),
        "env": env,
        "ldd": _ldd_function(env, allow_subprocess),
    }


class _Environment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with ``**`` and sequence ``*`` bounded (``9**9**9`` and
    ``'x' * 10**10`` fail fast instead of exhausting memory)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        if (
            op == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right * left.bit_length() > MAX_TEMPLATE_REPEAT
        ):
            raise TemplateError(
                "template arithmetic result too large",
                expected=f"at most {MAX_TEMPLATE_REPEAT} bits",
                found=f"{left} ** {right}",
            )
        if op == "*":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() + right.bit_length() > MAX_TEMPLATE_REPEAT
            ):
                raise TemplateError(
                    "template arithmetic result too large",
                    expected=f"at most {MAX_TEMPLATE_REPEAT} bits",
                    found="a product of large integers",
                )
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and len(seq) * count > MAX_TEMPLATE_REPEAT
                ):
                    raise TemplateError(
                        "template repetition result too large",
                        expected=f"at most {MAX_TEMPLATE_REPEAT} items",
                        found=f"{len(seq)} * {count}",
                    )
        return super().call_binop(context, op, left, right)


# --- rendering ---------------------------------------------------------------------------------


def _template_line(exc: BaseException) -> int | None:
    line = None
    tb: types.TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _where(name: str, line: int | None) -> str:
    return f"{name}:{line}" if line else name


def render_template(
    template: str,
    variables: Mapping[str, object] | None = None,
    *,
    gramine: GramineInstall | None = None,
    environ: Mapping[str, str] | None = None,
    allow_subprocess: bool = True,
    name: str = "<template>",
) -> str:
    """Render a manifest template to TOML text, as ``gramine-manifest`` does (no validation).

    ``variables`` are the ``-D`` values; ``gramine`` the install whose paths ``gramine.*``
    returns (default: :func:`detect_gramine`); ``environ`` what ``env`` shows (default:
    ``os.environ``); ``name`` is used in messages. Raises :class:`TemplateError` (a
    :class:`ManifestError`) for syntax errors, undefined variables (``variable`` is set),
    failing helpers or any other evaluation error, always with the template line when known.
    """
    if len(template) > MAX_MANIFEST_TEMPLATE_BYTES:
        raise TemplateError(
            f"{name}: template too large",
            expected=f"<= {MAX_MANIFEST_TEMPLATE_BYTES} bytes",
            found=f"{len(template)} characters",
        )
    env = _Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    env.globals.update(
        template_globals(gramine=gramine, environ=environ, allow_subprocess=allow_subprocess)
    )
    try:
        compiled = env.from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"{_where(name, exc.lineno)}: template syntax error: {exc.message}"
        ) from exc
    except Exception as exc:  # the Jinja compiler on pathological input (e.g. RecursionError)
        raise TemplateError(f"{name}: cannot compile template: {type(exc).__name__}") from exc

    parts: list[str] = []
    size = 0
    try:
        for chunk in compiled.generate(**dict(variables or {})):
            size += len(chunk)
            if size > MAX_MANIFEST_BYTES:
                raise TemplateError(
                    f"{name}: rendered manifest too large",
                    expected=f"<= {MAX_MANIFEST_BYTES} characters",
                )
            parts.append(chunk)
    except jinja2.UndefinedError as exc:
        variable = _undefined_name(exc.message or "")
        raise TemplateError(
            f"{_where(name, _template_line(exc))}: undefined template variable: {exc.message}",
            expected="a value given with -D NAME=VALUE",
            found="undefined",
            variable=variable,
        ) from exc
    except SecurityError as exc:
        raise TemplateError(
            f"{_where(name, _template_line(exc))}: template tried an unsafe operation: {exc}"
        ) from exc
    except ManifestError as exc:  # raised by a helper (runtimedir, get_sys_path, ldd, ...)
        raise TemplateError(
            f"{_where(name, _template_line(exc))}: {exc.message}",
            expected=exc.expected,
            found=exc.found,
            variable=getattr(exc, "variable", None),
        ) from exc
    except Exception as exc:  # any evaluation error inside the template (TypeError, ...)
        raise TemplateError(
            f"{_where(name, _template_line(exc))}: template evaluation failed: "
            f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    return "".join(parts)


def _undefined_name(message: str) -> str | None:
    # StrictUndefined messages: "'ra_type' is undefined" or "'dict object' has no attribute 'x'"
    if message.endswith(" is undefined") and message.startswith("'"):
        return message[1 : message.index("'", 1)]
    marker = "has no attribute '"
    if marker in message:
        start = message.index(marker) + len(marker)
        return message[start : message.find("'", start)]
    return None


def render_manifest(
    template: str,
    variables: Mapping[str, object] | None = None,
    *,
    gramine: GramineInstall | None = None,
    environ: Mapping[str, str] | None = None,
    allow_subprocess: bool = True,
    name: str = "<template>",
) -> Manifest:
    """Render a template (:func:`render_template`) and parse the result
    (:meth:`Manifest.from_toml`), like ``gramine-manifest --check``.

    Raises :class:`TemplateError` or :class:`~.problems.ManifestValidationError`.
    """
    install = gramine or detect_gramine()
    text = render_template(
        template,
        variables,
        gramine=install,
        environ=environ,
        allow_subprocess=allow_subprocess,
        name=name,
    )
    return Manifest.from_toml(text, gramine=install)
