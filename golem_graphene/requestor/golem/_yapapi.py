"""The real yapapi, when it is installed (``golem-graphene[golem]``), and what stands in for it.

yapapi is an optional dependency: with it, :mod:`golem_graphene.requestor.golem` hands out
yapapi's own ``WorkContext``, ``Script``, ``Task``, ``CommandExecuted`` and
``CommandExecutionError``, and :class:`~golem_graphene.requestor.golem.payload.SgxPayload` is a
yapapi ``Payload`` (so ``Golem.execute_tasks`` gets the real thing). Without it, the minimal
classes of :mod:`golem_graphene.requestor.golem.work` take those names, and the payload derives
from :class:`PayloadBase`'s fallback below, which has the one method yapapi's engine calls
(``decorate_demand``).

For mypy the names always have our types (it cannot know which is installed): whatever is
imported from here is used only through the members both share.
"""

from __future__ import annotations

import abc
import importlib.metadata
import warnings
from typing import TYPE_CHECKING, Any

__all__ = ["HAVE_YAPAPI", "YAPAPI_VERSION", "PayloadBase"]


class _FallbackPayload(abc.ABC):
    """What a yapapi ``Payload`` is to the engine: something that decorates a demand."""

    @abc.abstractmethod
    async def decorate_demand(self, demand: Any) -> None:
        """Add the payload's properties and constraints to ``demand``."""


def _import_yapapi() -> tuple[Any, str | None]:
    """yapapi's ``Payload`` class and version, or ``(None, None)`` when yapapi is absent."""
    try:
        with warnings.catch_warnings():
            # yapapi 0.13.1's __init__ calls pkg_resources.get_distribution(); a setuptools new
            # enough to deprecate pkg_resources warns at that import. It says nothing about our
            # use of yapapi, and the test suite turns every warning into an error, so this one
            # (and only at this import) is ignored.
            warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated")
            warnings.filterwarnings("ignore", message=r"Deprecated call to `pkg_resources")
            from yapapi.payload import Payload
    except ImportError:
        return None, None
    try:
        version = importlib.metadata.version("yapapi")
    except importlib.metadata.PackageNotFoundError:  # imported from a source tree
        version = "unknown"
    return Payload, version


_payload_class, YAPAPI_VERSION = _import_yapapi()
HAVE_YAPAPI = _payload_class is not None
"""True when the real yapapi is importable (``pip install 'golem-graphene[golem]'``)."""

if TYPE_CHECKING:
    PayloadBase = _FallbackPayload
else:
    PayloadBase = _payload_class if HAVE_YAPAPI else _FallbackPayload
