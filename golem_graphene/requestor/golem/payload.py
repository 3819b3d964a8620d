"""The payload of a confidential task: a yapapi ``Payload`` (when yapapi is installed).

yapapi's ``Golem.execute_tasks(worker, tasks, payload=...)`` asks the payload to decorate the
demand: ``await payload.decorate_demand(demand)``, where ``demand.ensure(constraint)`` adds a
constraint and the demand's property dictionary (``properties`` in recent yapapi, ``props`` in
older ones) takes properties (yapapi ``payload/__init__.py``, ``props/builder.py``). With yapapi
installed, :class:`SgxPayload` derives from ``yapapi.payload.Payload`` itself; without it, from
a minimal stand-in with the same ``decorate_demand`` (:mod:`._yapapi`). Either way it decorates
yapapi's real ``DemandBuilder`` and anything offering those two members.

The demand asks for ``golem.runtime.name = gramine-sgx`` and, by default, for the
``gramine-sgx`` runner with DCAP attestation (``golem.runtime.sgx.*`` are our offer
properties, see :mod:`golem_graphene.runtime.offer`). These only choose providers: the
requestor trusts the enclave's verified quote, never an offer. A real yagna market matches
these demands against our ``offer-template`` as ya-provider publishes it
(``tests/golem_live``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golem_graphene.errors import ConfigError
from golem_graphene.protocol.golem import RUNTIME_NAME
from golem_graphene.requestor.golem._yapapi import PayloadBase
from golem_graphene.requestor.golem.package import TaskPackage, build_task_package

__all__ = ["SgxPayload", "confidential_payload"]

_RUNNERS = ("gramine-sgx", "sim", "gramine-direct")


def _constraint_value(value: object) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if any(c in text for c in "()&|!=<>*\\"):
        raise ConfigError("a constraint value may not contain filter syntax", found=text)
    return text


@dataclass(frozen=True)
class SgxPayload(PayloadBase):
    """Providers running ``gramine-sgx`` with enough resources, and the task package to deploy.

    ``runner`` is ``gramine-sgx`` unless you test against ``sim`` providers (no SGX
    protection; your policy must also trust their simulation root by name). ``attestation``
    defaults to what the runner's offers say: ``dcap``, or ``none`` for ``gramine-direct``.
    Raises :class:`ConfigError` for a malformed package property or an unknown runner.
    """

    task_package: str
    min_mem_gib: float = 0.5
    min_storage_gib: float = 2.0
    min_cpu_threads: int = 1
    runner: str = "gramine-sgx"
    attestation: str = ""
    extra_constraints: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.task_package.startswith("hash:sha3:"):
            raise ConfigError(
                "task_package must be hash:sha3:<hex>:<url>", found=self.task_package[:80]
            )
        if self.runner not in _RUNNERS:
            raise ConfigError("unknown runner", expected=" or ".join(_RUNNERS), found=self.runner)
        if not self.attestation:
            # Mirrors offer-template: only gramine-direct offers publish attestation = none.
            default = "none" if self.runner == "gramine-direct" else "dcap"
            object.__setattr__(self, "attestation", default)

    def properties(self) -> dict[str, Any]:
        """Demand properties."""
        return {"golem.srv.comp.task_package": self.task_package}

    def constraint_list(self) -> list[str]:
        """Each constraint in LDAP filter syntax, as Golem demands write them."""
        items = [
            f"(golem.runtime.name={RUNTIME_NAME})",
            f"(golem.runtime.sgx.runner={_constraint_value(self.runner)})",
            f"(golem.runtime.sgx.attestation={_constraint_value(self.attestation)})",
            f"(golem.inf.mem.gib>={_constraint_value(self.min_mem_gib)})",
            f"(golem.inf.storage.gib>={_constraint_value(self.min_storage_gib)})",
            f"(golem.inf.cpu.threads>={_constraint_value(self.min_cpu_threads)})",
        ]
        return items + list(self.extra_constraints)

    def constraints(self) -> str:
        """All constraints joined with ``&``."""
        return "(&" + "".join(self.constraint_list()) + ")"

    async def decorate_demand(self, demand: Any) -> None:
        """yapapi's payload hook: add our constraints and properties to ``demand``."""
        demand.ensure(self.constraints())
        props = getattr(demand, "properties", None)
        if not isinstance(props, dict):
            props = demand.props
        props.update(self.properties())


def confidential_payload(
    spec: str | Path,
    package_url: str,
    *,
    package_path: str | Path | None = None,
    **kwargs: Any,
) -> tuple[SgxPayload, TaskPackage]:
    """Pack ``spec`` and make the payload that names it at ``package_url``.

    Serve the returned package's file at ``package_url`` (any HTTP server the providers can
    reach); ``package_path`` says where to write it (default: beside the spec). Other keyword
    arguments go to :class:`SgxPayload` (``min_mem_gib``, ``runner``...).
    """
    spec_path = Path(spec)
    spec_dir = spec_path if spec_path.is_dir() else spec_path.parent
    target = Path(package_path) if package_path else spec_dir.parent / f"{spec_dir.name}.tar"
    package = build_task_package(spec_path, target)
    return SgxPayload(task_package=package.property_value(package_url), **kwargs), package
