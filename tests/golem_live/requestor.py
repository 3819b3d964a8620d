"""The requestor's side through the real yapapi REST layer: demands exactly as yapapi's engine
builds them (``yapapi/engine.py`` ``create_demand_builder``), with our payload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from market import PLATFORM, SUBNET
from yapapi import props, rest
from yapapi.config import ApiConfig
from yapapi.engine import _Engine
from yapapi.payload import Payload
from yapapi.props.builder import DemandBuilder
from yapapi.rest.market import OfferProposal, Subscription
from yapapi.strategy import LeastExpensiveLinearPayuMS


@dataclass
class YapapiRequestor:
    """yapapi's REST clients for the requestor identity, and its allocation."""

    market: rest.Market
    payment: rest.Payment
    allocation: rest.payment.Allocation
    address: str

    async def demand(self, payload: Payload, expiration: timedelta) -> DemandBuilder:
        """The demand yapapi's engine would post for ``payload``."""
        builder = DemandBuilder()
        expires = datetime.now(UTC) + expiration
        builder.add(props.Activity(expiration=expires, multi_activity=True))
        builder.add(props.NodeInfo(subnet_tag=SUBNET))
        builder.ensure(f"({props.NodeInfoKeys.subnet_tag}={SUBNET})")
        decoration = await self.payment.decorate_demand([self.allocation.id])
        await builder.decorate(
            _Engine.PaymentDecorator(decoration), LeastExpensiveLinearPayuMS(), payload
        )
        return builder


@asynccontextmanager
async def yapapi_requestor(
    api_url: str, app_key: str, address: str
) -> AsyncIterator[YapapiRequestor]:
    """Clients and an allocation (validation skipped offline), closed and released at exit."""
    config = rest.Configuration(ApiConfig(app_key=app_key, api_url=api_url))
    async with AsyncExitStack() as stack:
        market_client = await stack.enter_async_context(config.market())
        payment_client = await stack.enter_async_context(config.payment())
        payment = rest.Payment(payment_client)
        allocation = await stack.enter_async_context(
            payment.new_allocation(Decimal("1"), payment_platform=PLATFORM, payment_address=address)
        )
        yield YapapiRequestor(rest.Market(market_client), payment, allocation, address)


async def collect(
    subscription: Subscription, expected: int, *, settle: float = 2.0, timeout: float = 20.0
) -> list[OfferProposal]:
    """The proposals the subscription receives: wait (at most ``timeout``) for ``expected`` of
    them, then ``settle`` seconds more, so that one too many would show."""
    found: list[OfferProposal] = []
    enough = asyncio.Event()

    async def gather() -> None:
        async for proposal in subscription.events():
            found.append(proposal)
            if len(found) >= expected:
                enough.set()

    if expected == 0:
        enough.set()
    task = asyncio.create_task(gather())
    try:
        await asyncio.wait_for(enough.wait(), timeout)
        await asyncio.sleep(settle)
    except TimeoutError:
        pass  # fewer than expected: the caller's assertion says which are missing
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return found


async def first_draft(
    subscription: Subscription, demand: DemandBuilder, timeout: float = 30
) -> OfferProposal:
    """Negotiate as yapapi's engine does: answer the initial offer with the demand and the
    common payment platform (``Job._handle_proposal``), return the provider's draft."""

    async def negotiate() -> OfferProposal:
        async for proposal in subscription.events():
            if proposal.is_draft:
                return proposal
            assert f"golem.com.payment.platform.{PLATFORM}.address" in proposal.props
            answer = {**demand.properties, "golem.com.payment.chosen-platform": PLATFORM}
            await proposal.respond(answer, demand.constraints)
        raise AssertionError("the demand subscription ended")

    return await asyncio.wait_for(negotiate(), timeout)


def offer_props(proposal: OfferProposal) -> dict[str, Any]:
    return dict(proposal.props)
