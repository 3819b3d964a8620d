"""Our offers and payloads on yagna's real market (0.17.6), through the real yapapi (0.13.1).

The provider's side is ya-provider's market part as a REST client (:mod:`market`): the offer is
the real runtime's ``offer-template`` output merged as the ExeUnit and ya-provider merge it. The
requestor's demand is built by yapapi's own classes from :func:`confidential_payload`. yagna's
market resolver decides what matches; agreements, termination and the invoice go through its
market and payment services.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from golem_support import CSV_STATS
from market import PLATFORM, ProviderAgent, add_constraints, build_offer
from requestor import collect, first_draft, yapapi_requestor
from yagna import Identities, YagnaNode

from golem_graphene.requestor.golem import SgxPayload, confidential_payload
from golem_graphene.runtime.offer import OFFER_CONSTRAINTS, OFFER_PROPERTIES

RUNNERS = ("sim", "gramine-sgx", "gramine-direct")
PACKAGE_URL = "http://127.0.0.1:9/csv-stats.tar"  # a demand names it; nothing downloads it here


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SgxPayload]:
    """One payload per runner, made by confidential_payload from the csv-stats spec."""
    folder = tmp_path_factory.mktemp("packages")
    out: dict[str, SgxPayload] = {}
    for runner in RUNNERS:
        payload, _ = confidential_payload(
            CSV_STATS, PACKAGE_URL, package_path=folder / f"{runner}.tar", runner=runner
        )
        out[runner] = payload
    return out


def test_offer_is_built_as_ya_provider_merges_the_template(
    runtime_template: Callable[[str], dict[str, Any]],
) -> None:
    """Our template's properties reach the offer unchanged; its constraints are merged."""
    template = runtime_template("sim")
    offer = build_offer(template, provider_id="0x" + "11" * 20, now_ms=1234)
    assert {k: offer.properties[k] for k in OFFER_PROPERTIES} == template["properties"]
    assert template["constraints"] == OFFER_CONSTRAINTS
    assert offer.constraints == (
        f"(& (& {OFFER_CONSTRAINTS} (golem.srv.comp.expiration>1234))"
        " (golem.node.debug.subnet=public))"
    )
    assert offer.properties["golem.runtime.name"] == "gramine-sgx"
    assert offer.properties["golem.com.usage.vector"] == [
        "golem.usage.cpu_sec",
        "golem.usage.duration_sec",
        "golem.usage.gramine-sgx.enclave_sec",
    ]
    assert add_constraints("", "(a=1)") == "(a=1)"


async def test_empty_template_constraints_never_match_but_ours_do(
    yagna: tuple[YagnaNode, Identities],
    provider: ProviderAgent,
    runtime_template: Callable[[str], dict[str, Any]],
    payloads: dict[str, SgxPayload],
) -> None:
    """What made the template's constraints non-empty: the market accepts an offer with ``""``
    but never matches it, while the template's own and the merged form match."""
    node, ids = yagna
    template = runtime_template("sim")
    unmerged = []
    for constraints, tag in (("", "empty"), (OFFER_CONSTRAINTS, "template")):
        props = {**build_offer(template, provider_id=ids.provider_id).properties, "test.tag": tag}
        body = {"properties": props, "constraints": constraints}
        unmerged.append(await provider.rest.call("POST", "/market-api/v1/offers", body=body))
    await provider.publish(build_offer(template, provider_id=ids.provider_id))
    try:
        async with yapapi_requestor(node.api_url, ids.requestor_key, ids.requestor_id) as r:
            demand = await r.demand(payloads["sim"], timedelta(minutes=10))
            async with await demand.subscribe(r.market) as subscription:
                found = await collect(subscription, 2)
    finally:
        for subscription_id in unmerged:
            await provider.rest.call("DELETE", f"/market-api/v1/offers/{subscription_id}")
    tags = sorted(str(p.props.get("test.tag", "merged")) for p in found)
    assert tags == ["merged", "template"]


async def test_each_runner_matches_only_its_own_offers(
    yagna: tuple[YagnaNode, Identities],
    provider: ProviderAgent,
    runtime_template: Callable[[str], dict[str, Any]],
    payloads: dict[str, SgxPayload],
) -> None:
    """Three offers (one per runner) and five demands: each gets exactly the right offers.

    A demand for gramine-sgx must never match a sim offer, and a ``simulated = false``
    constraint must exclude sim (and gramine-direct) whatever else the demand says.
    """
    node, ids = yagna
    for runner in RUNNERS:
        await provider.publish(build_offer(runtime_template(runner), provider_id=ids.provider_id))
    sim_but_real = SgxPayload(
        task_package=payloads["sim"].task_package,
        runner="sim",
        extra_constraints=("(golem.runtime.sgx.simulated=false)",),
    )
    sgx_not_simulated = SgxPayload(
        task_package=payloads["sim"].task_package,
        extra_constraints=("(golem.runtime.sgx.simulated=false)",),
    )
    demands = {
        **payloads,
        "sim+simulated=false": sim_but_real,
        "sgx+simulated=false": sgx_not_simulated,
    }
    expected = {
        "sim": ["sim"],
        "gramine-sgx": ["gramine-sgx"],
        "gramine-direct": ["gramine-direct"],
        "sim+simulated=false": [],
        "sgx+simulated=false": ["gramine-sgx"],
    }
    async with yapapi_requestor(node.api_url, ids.requestor_key, ids.requestor_id) as r:

        async def matched(name: str) -> list[str]:
            demand = await r.demand(demands[name], timedelta(minutes=10))
            async with await demand.subscribe(r.market) as subscription:
                found = await collect(subscription, len(expected[name]))
            return sorted(str(p.props["golem.runtime.sgx.runner"]) for p in found)

        results = await asyncio.gather(*(matched(name) for name in demands))
    assert dict(zip(demands, results, strict=True)) == expected


async def test_agreement_approved_terminated_and_invoice_accepted(
    yagna: tuple[YagnaNode, Identities],
    provider: ProviderAgent,
    runtime_template: Callable[[str], dict[str, Any]],
    payloads: dict[str, SgxPayload],
) -> None:
    """The whole market and payment life of one agreement, as yapapi's engine drives it."""
    node, ids = yagna
    template = runtime_template("sim")
    await provider.publish(build_offer(template, provider_id=ids.provider_id))
    async with yapapi_requestor(node.api_url, ids.requestor_key, ids.requestor_id) as r:
        demand = await r.demand(payloads["sim"], timedelta(minutes=10))
        async with await demand.subscribe(r.market) as subscription:
            draft = await first_draft(subscription, demand)
            agreement = await draft.create_agreement(timedelta(minutes=5))
            assert await agreement.confirm()  # waits for the provider's approval
        assert await provider.wait_approved() == agreement.id
        details = await agreement.get_details()
        offer = details.raw_details.offer.properties
        assert {k: offer[k] for k in OFFER_PROPERTIES} == template["properties"]
        requested = details.raw_details.demand.properties
        assert requested["golem.srv.comp.task_package"] == payloads["sim"].task_package
        assert requested[f"golem.com.payment.platform.{PLATFORM}.address"] == ids.requestor_id
        assert details.raw_details.state == "Approved"

        assert await agreement.terminate({"message": "done", "golem.requestor.code": "Success"})
        terminated = await provider.wait_terminated(agreement.id)
        assert terminated["reason"] == {"message": "done", "golem.requestor.code": "Success"}

        invoice_id = await provider.invoice(agreement.id, "0.0123", [])
        invoice = await r.payment.invoice(invoice_id)
        assert Decimal(invoice.amount) == Decimal("0.0123")
        await invoice.accept(amount=invoice.amount, allocation=r.allocation)
        assert (await r.payment.invoice(invoice_id)).status == "ACCEPTED"
        assert await provider.invoice_status(invoice_id) == "ACCEPTED"


def test_bad_runner_in_a_payload_is_a_typed_error(tmp_path: Path) -> None:
    from golem_graphene.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown runner"):
        confidential_payload(CSV_STATS, PACKAGE_URL, package_path=tmp_path / "p.tar", runner="vm")
