"""How the manifest parser reads a decoded TOML document: typed getters that record problems.

:class:`Ctx` collects every problem of one parse (the parser reports them all, not only the
first); :class:`Table` reads one TOML table with typed getters and, when done, reports each key
nobody read (removed keys with what replaced them, unknown keys as errors, since Gramine's tools
refuse them); the ``check_*`` functions validate one value.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from golem_graphene.gramine._syntax import HEX_RE, found_text, join_key, type_name
from golem_graphene.gramine.problems import ManifestProblem, ManifestValidationError
from golem_graphene.gramine.sizes import parse_size
from golem_graphene.limits import MAX_MANIFEST_NESTING

MISSING: Final = object()
"""Returned by :meth:`Table.take` for a key the table does not have."""

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


class Ctx:
    """Collects problems while the builders walk the document."""

    def __init__(self) -> None:
        self.problems: list[ManifestProblem] = []

    def error(
        self, key: str, rule: str, *, expected: str | None = None, found: object = MISSING
    ) -> None:
        self.problems.append(
            ManifestProblem(
                key, rule, "error", expected, None if found is MISSING else found_text(found)
            )
        )

    def warn(self, key: str, rule: str) -> None:
        self.problems.append(ManifestProblem(key, rule, "warning"))

    def wrong_type(self, key: str, expected: str, value: object) -> None:
        self.error(key, f"must be {expected}", expected=expected, found=type_name(value))

    @property
    def failed(self) -> bool:
        return any(p.severity == "error" for p in self.problems)


class Table:
    """A TOML table being read: typed getters that record problems, then an unknown-key check."""

    def __init__(self, ctx: Ctx, data: Mapping[str, Any], prefix: str) -> None:
        self.ctx = ctx
        self.data = data
        self.prefix = prefix
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return join_key(self.prefix, name)

    def has(self, name: str) -> bool:
        return name in self.data

    def take(self, name: str) -> object:
        self.seen.add(name)
        return self.data.get(name, MISSING)

    def get_bool(self, name: str, default: bool) -> bool:
        value = self.take(name)
        if value is MISSING:
            return default
        if not isinstance(value, bool):
            self.ctx.wrong_type(self.key(name), "a boolean", value)
            return default
        return value

    def get_int(
        self, name: str, default: int, *, lo: int | None = None, hi: int | None = None
    ) -> int:
        value = self.take(name)
        if value is MISSING:
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
        if value is MISSING:
            return None
        return self._check_int(self.key(name), value, 0, lo=lo, hi=hi)

    def get_str(self, name: str, *, nonempty: bool = False) -> str | None:
        value = self.take(name)
        if value is MISSING:
            return None
        return check_str(self.ctx, self.key(name), value, nonempty=nonempty)

    def get_enum(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.take(name)
        if value is MISSING:
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
        if value is MISSING:
            return default
        return check_size(self.ctx, self.key(name), value, default)

    def get_opt_size(self, name: str) -> int | None:
        value = self.take(name)
        if value is MISSING:
            return None
        return check_size(self.ctx, self.key(name), value, 0)

    def get_table(self, name: str) -> Table | None:
        value = self.take(name)
        if value is MISSING:
            return None
        if not isinstance(value, dict):
            self.ctx.wrong_type(self.key(name), "a table", value)
            return None
        return Table(self.ctx, value, self.key(name))

    def get_list(self, name: str) -> list[Any] | None:
        value = self.take(name)
        if value is MISSING:
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


def check_str(ctx: Ctx, key: str, value: object, *, nonempty: bool = False) -> str | None:
    """A string without NUL characters (Gramine reads C strings); None after a problem."""
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


def check_size(ctx: Ctx, key: str, value: object, default: int) -> int:
    """A size string in bytes (:func:`~.sizes.parse_size`); ``default`` after a problem."""
    if not isinstance(value, str):
        ctx.error(
            key,
            "must be a size string (Gramine does not accept a bare TOML number)",
            expected='a string such as "512M"',
            found=type_name(value) + " " + found_text(value),
        )
        return default
    try:
        return parse_size(value, key=key)
    except ManifestValidationError as exc:
        ctx.problems.extend(exc.problems)
        return default


def check_uri(
    ctx: Ctx, key: str, value: object, schemes: tuple[str, ...] = ("file:",)
) -> str | None:
    """A URI with one of ``schemes`` and a non-empty path; None after a problem."""
    text = check_str(ctx, key, value)
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


def check_hex(ctx: Ctx, key: str, value: object, *, digits: int, what: str) -> str | None:
    """Exactly ``digits`` hex digits, in lower case; None after a problem."""
    text = check_str(ctx, key, value)
    if text is None:
        return None
    if len(text) != digits or not HEX_RE.fullmatch(text):
        ctx.error(
            key,
            f"must be {what}: exactly {digits} hex digits",
            expected=f"{digits} hex digits",
            found=text,
        )
        return None
    return text.lower()


def check_mask(ctx: Ctx, key: str, value: object, *, bits: int) -> int | None:
    """A hex mask of at most ``bits`` bits (``0x`` prefix optional); None after a problem."""
    text = check_str(ctx, key, value)
    if text is None:
        return None
    body = text[2:] if text[:2] in ("0x", "0X") else text
    if not body or len(body) > bits // 4 or not HEX_RE.fullmatch(body):
        ctx.error(
            key,
            f"must be a {bits // 8}-byte hex value",
            expected=f'"0x" + at most {bits // 4} hex digits',
            found=text,
        )
        return None
    return int(body, 16)


def check_plain_data(ctx: Ctx, key: str, value: object, depth: int = 0) -> object:
    """Freeze free-form data (``sys.ioctl_structs``): str, int, bool, arrays and tables only."""
    if depth > MAX_MANIFEST_NESTING:
        ctx.error(key, "nested too deeply", expected=f"at most {MAX_MANIFEST_NESTING} levels")
        return None
    if isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return check_str(ctx, key, value)
    if isinstance(value, list):
        return tuple(
            check_plain_data(ctx, f"{key}[{i}]", item, depth + 1) for i, item in enumerate(value)
        )
    if isinstance(value, dict):
        return MappingProxyType(
            {
                name: check_plain_data(ctx, join_key(key, name), item, depth + 1)
                for name, item in value.items()
            }
        )
    ctx.error(
        key,
        "only strings, integers, booleans, arrays and tables are allowed here",
        found=type_name(value),
    )
    return None
