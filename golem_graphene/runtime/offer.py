"""``test`` and ``offer-template``: what this host can run, and what the provider's offer says.

The offer properties under ``golem.runtime.sgx.*`` are **ours** (no Golem repository defines an
SGX property in offers; research/golem.md section 2.5). They let a requestor filter providers
before any agreement; they are claims of an untrusted provider, and the requestor's verification
of the enclave's quote is what counts. Documented in ``docs/golem.md``:

====================================  ============================================================
property                              value
====================================  ============================================================
``golem.runtime.sgx.runner``          ``gramine-sgx``, ``sim`` or ``gramine-direct``
``golem.runtime.sgx.attestation``     ``dcap`` (ECDSA quotes; simulated ones under ``sim``) or
                                      ``none`` (``gramine-direct``)
``golem.runtime.sgx.simulated``       ``false`` only for ``gramine-sgx``: no SGX protection else
``golem.runtime.sgx.libos``           ``gramine``
``golem.runtime.sgx.libos_version``   ``gramine-sgx --version`` (``golem-graphene-sim/<ver>``
                                      under ``sim``; ``unknown`` when Gramine is missing)
``golem.runtime.sgx.protocol``        the task protocol, ``golem-graphene/v1``
``golem.runtime.sgx.mrsigner``        MRSIGNER of the key this provider signs images with (hex)
====================================  ============================================================
"""

from __future__ import annotations

from typing import Any

import golem_graphene
from golem_graphene.errors import RunnerError
from golem_graphene.gramine.sgx_host import gramine_version
from golem_graphene.host.image import load_or_create_signing_key, mrsigner_of
from golem_graphene.host.runner_check import RunnerCheck, check_all_runners, check_runner
from golem_graphene.protocol.names import RUNNER_NAMES
from golem_graphene.protocol.version import PROTOCOL_NAME
from golem_graphene.runtime.settings import RUNTIME_NAME, RUNTIME_VERSION, RuntimeSettings

__all__ = ["OFFER_CONSTRAINTS", "OFFER_PROPERTIES", "RunnerCheck", "offer_template", "self_test"]

OFFER_CONSTRAINTS = "(golem.srv.comp.task_package=*)"
"""What the offer asks of a demand: a task package to deploy (this runtime cannot run without).

Never empty, so the template is safe however it is published: the ExeUnit and ya-provider treat
empty constraints as none and put theirs in place (``OfferTemplate::add_constraints``); merged,
this becomes ``(& (golem.srv.comp.task_package=*) (golem.srv.comp.expiration>...))``. An offer
posted as it is with empty constraints is accepted by yagna's market but never matches a demand
(tried on yagna 0.17.6, tests/golem_live).
"""

OFFER_PROPERTIES = (
    "golem.runtime.sgx.runner",
    "golem.runtime.sgx.attestation",
    "golem.runtime.sgx.simulated",
    "golem.runtime.sgx.libos",
    "golem.runtime.sgx.libos_version",
    "golem.runtime.sgx.protocol",
    "golem.runtime.sgx.mrsigner",
)
"""Every property ``offer-template`` publishes (all ours, see the module docstring)."""


def self_test(settings: RuntimeSettings) -> tuple[bool, dict[str, Any]]:
    """Check every runner; the verdict is whether the configured runner is usable here."""
    checks = check_all_runners(allow_insecure=tuple(settings.allow_insecure))
    ok = checks[settings.runner].usable
    report: dict[str, Any] = {
        "runtime": RUNTIME_NAME,
        "version": RUNTIME_VERSION,
        "runner": settings.runner,
        "ok": ok,
        "runners": {
            name: {"usable": checks[name].usable, "detail": checks[name].detail}
            for name in RUNNER_NAMES
        },
    }
    if ok and settings.runner == "sim":
        from golem_graphene.host.sim.platform import SimPlatform

        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        platform = SimPlatform.load_or_create(settings.data_dir)
        report["sim_root_fingerprint"] = platform.root_fingerprint
    return ok, report


def _libos_version(runner: str) -> str:
    if runner == "sim":
        return f"golem-graphene-sim/{golem_graphene.__version__}"
    return gramine_version(runner) or "unknown"


def offer_template(settings: RuntimeSettings, *, check_host: bool = True) -> dict[str, Any]:
    """The ``OfferTemplate`` JSON: ``{"properties": {...}, "constraints": OFFER_CONSTRAINTS}``.

    Raises RunnerError when the configured runner cannot run on this host: an offer must not
    claim a runner (and, for ``gramine-sgx``, SGX protection) that the host cannot provide.
    ``check_host=False`` gives the template such a host would publish (market tests on a host
    without SGX); the runtime's ``offer-template`` command always checks.
    """
    check = check_runner(settings.runner, allow_insecure=tuple(settings.allow_insecure))
    if check_host and not check.usable:
        raise RunnerError(
            f"no offer: the {settings.runner} runner cannot run on this host ({check.detail}); "
            "fix the host, or choose another --runner"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = load_or_create_signing_key(settings.signing_key_path)
    properties: dict[str, Any] = {
        "golem.runtime.sgx.runner": settings.runner,
        "golem.runtime.sgx.attestation": "none" if settings.runner == "gramine-direct" else "dcap",
        "golem.runtime.sgx.simulated": settings.runner != "gramine-sgx",
        "golem.runtime.sgx.libos": "gramine",
        "golem.runtime.sgx.libos_version": _libos_version(settings.runner),
        "golem.runtime.sgx.protocol": PROTOCOL_NAME,
        "golem.runtime.sgx.mrsigner": mrsigner_of(key.public_key()).hex(),
    }
    return {"properties": properties, "constraints": OFFER_CONSTRAINTS}
