"""The error tree: its description in ``errors.py`` matches the classes, and HTTP statuses."""

from __future__ import annotations

import importlib
import pkgutil

import golem_graphene
from golem_graphene import errors


def _import_everything() -> None:
    for module in pkgutil.walk_packages(golem_graphene.__path__, "golem_graphene."):
        if module.name.endswith("__main__") or module.name.endswith("proto.regenerate"):
            continue
        importlib.import_module(module.name)


def _tree(cls: type[errors.Error], depth: int, out: list[str]) -> list[str]:
    for sub in sorted(cls.__subclasses__(), key=lambda c: c.__name__):
        if sub.__name__.startswith("_") or sub.__module__.startswith("tests"):
            continue
        module = sub.__module__.removeprefix("golem_graphene.")
        where = "" if sub.__module__ == errors.__name__ else f"  ({module})"
        out.append("    " * depth + f"{sub.__name__}{where}")
        _tree(sub, depth + 1, out)
    return out


def test_the_docstring_describes_the_whole_tree() -> None:
    _import_everything()
    described = errors.__doc__ or ""
    tree = "\n".join(["Error", *_tree(errors.Error, 1, [])])
    expected = "\n".join("    " + line for line in tree.splitlines())
    assert expected in described, f"update errors.py's docstring to:\n{expected}"


def test_http_status_per_family() -> None:
    assert errors.Error("x").http_status == 422
    assert errors.ProtocolError("x").http_status == 400
    assert errors.ConfigError("x").http_status == 400
    assert errors.NotFoundError("x").http_status == 404
    assert errors.TransitionError("x").http_status == 409
    assert errors.AuthError("forbidden", "x", 403).http_status == 403
    limit = errors.LimitError("too_many_tasks", "x", status=429)
    assert (limit.code, limit.http_status) == ("too_many_tasks", 429)


def test_describe_names_only_what_is_known() -> None:
    assert errors.Error("m").describe() == "m"
    assert errors.Error("m", expected=1).describe() == "m: expected 1"
    assert errors.Error("m", found=2).describe() == "m: found 2"
    assert errors.Error("m", expected=1, found=2).describe() == "m: expected 1, found 2"
