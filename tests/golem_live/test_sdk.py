"""Both faces of ``golem_graphene.requestor.golem``: with the real yapapi 0.13.1 installed, and
without it (a fresh interpreter in which importing yapapi fails)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import yapapi
from yapapi.events import CommandExecuted
from yapapi.payload import Payload
from yapapi.props.builder import DemandBuilder
from yapapi.rest.activity import CommandExecutionError
from yapapi.script import Script

import golem_graphene.requestor.golem as golem
from golem_graphene.requestor.golem import work

PACKAGE = f"hash:sha3:{'ab' * 28}:http://127.0.0.1:9/p.tar"


def test_with_yapapi_the_sdk_names_are_yapapis_own() -> None:
    assert golem.HAVE_YAPAPI and golem.YAPAPI_VERSION == "0.13.1"
    assert golem.WorkContext is yapapi.WorkContext
    assert golem.Task is yapapi.Task
    assert golem.Script is Script
    assert golem.CommandExecuted is CommandExecuted
    assert golem.CommandExecutionError is CommandExecutionError
    # The minimal classes stay where the single-activity engine needs them.
    assert work.WorkContext is not yapapi.WorkContext


async def test_with_yapapi_the_payload_is_a_yapapi_payload() -> None:
    payload = golem.SgxPayload(task_package=PACKAGE, runner="gramine-direct")
    assert isinstance(payload, Payload)
    builder = DemandBuilder()
    await builder.decorate(payload)
    assert builder.properties == {"golem.srv.comp.task_package": PACKAGE}
    assert builder.constraints == (
        "(&(golem.runtime.name=gramine-sgx)(golem.runtime.sgx.runner=gramine-direct)"
        "(golem.runtime.sgx.attestation=none)(golem.inf.mem.gib>=0.5)"
        "(golem.inf.storage.gib>=2.0)(golem.inf.cpu.threads>=1))"
    )


WITHOUT_YAPAPI = textwrap.dedent(
    f"""
    import asyncio, sys
    sys.modules["yapapi"] = None  # any `import yapapi...` now raises ImportError
    import golem_graphene.requestor.golem as golem
    from golem_graphene.requestor.golem import work

    assert golem.HAVE_YAPAPI is False and golem.YAPAPI_VERSION is None
    for name in ("WorkContext", "Script", "Task", "CommandExecuted", "CommandExecutionError"):
        assert getattr(golem, name) is getattr(work, name), name
    assert not any(c.__module__.startswith("yapapi") for c in golem.SgxPayload.__mro__)

    class Demand:
        def __init__(self):
            self.properties, self.constraints = {{}}, []
        def ensure(self, constraint):
            self.constraints.append(constraint)

    demand = Demand()
    payload = golem.SgxPayload(task_package="{PACKAGE}", runner="sim")
    asyncio.run(payload.decorate_demand(demand))
    assert demand.properties == {{"golem.srv.comp.task_package": "{PACKAGE}"}}
    assert demand.constraints == [payload.constraints()]
    assert "yapapi" not in {{m.split(".")[0] for m in sys.modules if sys.modules[m]}}
    print("ok")
    """
)


def test_without_yapapi_the_minimal_classes_take_the_names() -> None:
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", WITHOUT_YAPAPI],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
