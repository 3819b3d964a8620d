"""ya-provider's market and payment side as the small REST client it is (not on PyPI).

The offer is built from our runtime's real ``offer-template`` output exactly as yagna 0.17.6
builds one (sources read, not copied; paths in the yagna repository):

1. the ExeUnit's ``offer-template`` (``exe-unit/src/exe_unit.rs``) takes the supervisor's own
   properties (usage vector, transfer schemes, progress capabilities) and patches the
   runtime's template over them; constraints are joined with ``OfferTemplate::add_constraints``
   (``utils/agreement-utils/src/template.rs``): an empty side is replaced, otherwise
   ``(& A B)``;
2. ya-provider (``agent/provider/src/execution/task_runner.rs``) appends the descriptor's priced
   counters that the preset prices to the usage vector;
3. ``ProviderAgent::build_offer`` (``agent/provider/src/provider_agent.rs``) keeps the preset's
   coefficients (sorted by name, a ``BTreeMap``) whose counters are in that vector, sets the
   linear pricing, the payment protocol version and one address per payment platform
   (``payments/pricing.rs``), adds its own constraint on ``golem.srv.comp.expiration`` (and the
   subnet when set) with ``add_constraints``, and lays node, infrastructure, runtime and service
   properties under the template (``utils/agreement-utils/src/typed_props.rs``).

:class:`ProviderAgent` then does what ya-provider's market does with it: post the offer, counter
each demand proposal with it, approve agreements, watch them terminate, and invoice them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from golem_graphene.runtime.descriptor import descriptor

# exe-unit/src/exe_unit.rs and service/counters.rs (a build without the sgx feature), and
# components/transfer (the gftp and http providers).
EXEUNIT_USAGE_VECTOR = [
    "golem.usage.duration_sec",
    "golem.usage.cpu_sec",
    "golem.usage.gib",
    "golem.usage.storage_gib",
]
TRANSFER_SCHEMES = ["gftp", "http", "https"]
PAYMENT_PROTOCOL_VERSION = 3  # NodeInfo::default().protocol_version
PLATFORM = "erc20-holesky-tglm"  # yapapi's default driver and network
SUBNET = "public"  # golemsp's and yapapi's default subnet

# The preset docs/golem.md tells providers to add.
PRESET_COEFFS = {
    "golem.usage.duration_sec": 0.0001,
    "golem.usage.cpu_sec": 0.0001,
    "golem.usage.gramine-sgx.enclave_sec": 0.0002,
}
PRESET_INITIAL_PRICE = 0.0


def add_constraints(current: str, more: str) -> str:
    """``OfferTemplate::add_constraints``: an empty side is replaced, else ``(& A B)``."""
    return more if not current else f"(& {current} {more})"


@dataclass(frozen=True)
class Offer:
    """An offer as posted to the market."""

    properties: dict[str, Any]
    constraints: str

    def body(self) -> dict[str, Any]:
        return {"properties": self.properties, "constraints": self.constraints}


def exeunit_template(runtime_template: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The ExeUnit's ``offer-template``: its own properties with the runtime's patched over."""
    properties: dict[str, Any] = {
        "golem.com.usage.vector": list(EXEUNIT_USAGE_VECTOR),
        "golem.activity.caps.transfer.protocol": list(TRANSFER_SCHEMES),
        "golem.activity.caps.transfer.report-progress": True,
        "golem.activity.caps.deploy.report-progress": True,
    }
    properties.update(runtime_template["properties"])
    return properties, add_constraints("", str(runtime_template["constraints"]))


def build_offer(
    runtime_template: Mapping[str, Any],
    *,
    provider_id: str,
    node_name: str = "golem-graphene-live-provider",
    mem_gib: float = 8.0,
    storage_gib: float = 20.0,
    threads: int = 2,
    now_ms: int | None = None,
) -> Offer:
    """The offer ya-provider would publish for our runtime with the documented preset."""
    desc = descriptor()[0]
    properties, constraints = exeunit_template(runtime_template)
    priced = [name for name, counter in desc["config"]["counters"].items() if counter["price"]]
    vector = properties["golem.com.usage.vector"] + [c for c in priced if c in PRESET_COEFFS]
    prices = sorted((k, v) for k, v in PRESET_COEFFS.items() if k in vector)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    constraints = add_constraints(constraints, f"(golem.srv.comp.expiration>{now_ms})")
    constraints = add_constraints(constraints, f"(golem.node.debug.subnet={SUBNET})")
    base: dict[str, Any] = {
        "golem.node.id.name": node_name,
        "golem.node.debug.subnet": SUBNET,
        "golem.node.net.is-public": False,
        "golem.inf.mem.gib": mem_gib,
        "golem.inf.storage.gib": storage_gib,
        "golem.inf.cpu.architecture": "x86_64",
        "golem.inf.cpu.cores": threads,
        "golem.inf.cpu.threads": threads,
        "golem.runtime.name": desc["name"],
        "golem.runtime.version": desc["version"],
        **desc["properties"],
        "golem.srv.caps.multi-activity": True,
        "golem.srv.caps.payload-manifest": False,
        "golem.com.scheme": "payu",
        "golem.com.pricing.model": "linear",
        "golem.com.pricing.model.linear.coeffs": [v for _, v in prices] + [PRESET_INITIAL_PRICE],
        f"golem.com.payment.platform.{PLATFORM}.address": provider_id,
    }
    properties["golem.com.usage.vector"] = [k for k, _ in prices]
    properties["golem.com.payment.protocol.version"] = PAYMENT_PROTOCOL_VERSION
    return Offer({**base, **properties}, constraints)


class RestError(Exception):
    """A REST call answered with an unexpected status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Rest:
    """yagna's REST API with one application key; every call bounded in time."""

    session: aiohttp.ClientSession
    base: str
    key: str

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.key}"}
        async with self.session.request(
            method,
            self.base + path,
            headers=headers,
            json=body,
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.text()
            if response.status >= 300:
                raise RestError(f"{method} {path}: {response.status} {text[:500]}", response.status)
            return json.loads(text) if text else None


@dataclass
class ProviderAgent:
    """The market side of ya-provider for one identity: offers, proposals, agreements, invoices."""

    rest: Rest
    provider_id: str
    offers: dict[str, Offer] = field(default_factory=dict)
    approved: dict[str, dict[str, Any]] = field(default_factory=dict)
    countered: list[str] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def publish(self, offer: Offer) -> str:
        """Post ``offer``; its subscription id. Counters and approvals start at once."""
        subscription: str = await self.rest.call("POST", "/market-api/v1/offers", body=offer.body())
        self.offers[subscription] = offer
        self._tasks.append(asyncio.create_task(self._negotiate(subscription)))
        return subscription

    async def _negotiate(self, subscription: str) -> None:
        offer = self.offers[subscription]
        while True:
            events = await self.rest.call(
                "GET",
                f"/market-api/v1/offers/{subscription}/events",
                params={"timeout": "2", "maxEvents": "10"},
            )
            for event in events:
                kind = event["eventType"]
                if kind == "ProposalEvent" and event["proposal"]["state"] in ("Initial", "Draft"):
                    # A demand (or the requestor's counter): answer with our offer, as
                    # ya-provider's negotiators do when they accept it.
                    proposal_id = event["proposal"]["proposalId"]
                    await self.rest.call(
                        "POST",
                        f"/market-api/v1/offers/{subscription}/proposals/{proposal_id}",
                        body=offer.body(),
                    )
                    self.countered.append(proposal_id)
                elif kind == "AgreementEvent":
                    agreement = event["agreement"]
                    await self.rest.call(
                        "POST",
                        f"/market-api/v1/agreements/{agreement['agreementId']}/approve",
                        params={"timeout": "10"},
                    )
                    self.approved[agreement["agreementId"]] = agreement

    def check(self) -> None:
        """Raise what stopped a negotiation loop, if one failed."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError("the provider's negotiation failed") from task.exception()

    async def wait_approved(self, timeout: float = 30) -> str:
        """The first agreement this provider approved (bounded wait)."""
        deadline = time.monotonic() + timeout
        while not self.approved:
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no agreement was approved within {timeout} s")
            await asyncio.sleep(0.1)
        return next(iter(self.approved))

    async def wait_terminated(self, agreement_id: str, timeout: float = 30) -> dict[str, Any]:
        """The provider's ``AgreementTerminatedEvent`` of ``agreement_id`` (bounded wait)."""
        deadline = time.monotonic() + timeout
        after = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
        while time.monotonic() < deadline:
            events = await self.rest.call(
                "GET",
                "/market-api/v1/agreementEvents",
                params={"timeout": "2", "afterTimestamp": after},
            )
            for event in events:
                if (
                    event["eventType"] == "AgreementTerminatedEvent"
                    and event["agreementId"] == agreement_id
                ):
                    return dict(event)
        raise TimeoutError(f"agreement {agreement_id} was not terminated within {timeout} s")

    async def invoice(self, agreement_id: str, amount: str, activity_ids: list[str]) -> str:
        """Issue and send an invoice for ``agreement_id`` (ya-provider does after terminating)."""
        invoice = await self.rest.call(
            "POST",
            "/payment-api/v1/invoices",
            body={
                "agreementId": agreement_id,
                "activityIds": activity_ids,
                "amount": amount,
                "paymentDueDate": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            },
        )
        invoice_id: str = invoice["invoiceId"]
        await self.rest.call("POST", f"/payment-api/v1/invoices/{invoice_id}/send")
        return invoice_id

    async def invoice_status(self, invoice_id: str) -> str:
        invoice = await self.rest.call("GET", f"/payment-api/v1/invoices/{invoice_id}")
        return str(invoice["status"])

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for subscription in list(self.offers):
            with contextlib.suppress(Exception):
                await self.rest.call("DELETE", f"/market-api/v1/offers/{subscription}")
        self.offers.clear()
