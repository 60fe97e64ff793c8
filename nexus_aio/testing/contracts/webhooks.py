"""The contract of :class:`~nexus_aio.stores.webhooks.WebhookOutbox`: the life of a delivery
(waiting, pending, delivered or failed) and claims that never hand one attempt out twice."""

from __future__ import annotations

import asyncio

from nexus_aio.stores.webhooks import Delivery, WebhookOutbox
from nexus_aio.testing.contracts.base import T0, StoreContract, async_tests

__all__ = ["WebhookOutboxContract"]

URL = "https://hooks.example.com/done"


def delivery(execution_id: str = "wf-1", created_at: float = T0) -> Delivery:
    return Delivery(execution_id, URL, created_at)


@async_tests
class WebhookOutboxContract(StoreContract):
    """Subclass it and provide ``store`` (an opened, empty outbox). Times are passed in, so the
    outbox needs no clock of its own."""

    async def test_a_new_delivery_waits_for_its_run(self, store: WebhookOutbox) -> None:
        await store.add(delivery())
        got = await store.get("wf-1")
        assert got is not None and (got.state, got.attempts, got.url) == ("waiting", 0, URL)
        assert await store.claim(T0 + 100, 10, 30) == []
        assert await store.waiting(10) == ["wf-1"]

    async def test_unknown_execution_has_no_delivery(self, store: WebhookOutbox) -> None:
        assert await store.get("nope") is None
        assert await store.ready("nope", T0) is False

    async def test_ready_makes_it_due_once(self, store: WebhookOutbox) -> None:
        await store.add(delivery())
        assert await store.ready("wf-1", T0 + 1) is True
        assert await store.ready("wf-1", T0 + 2) is False
        assert await store.waiting(10) == []
        got = await store.get("wf-1")
        assert got is not None and (got.state, got.next_at) == ("pending", T0 + 1)

    async def test_a_claim_takes_due_deliveries_oldest_due_first(
        self, store: WebhookOutbox
    ) -> None:
        for i, due in enumerate((T0 + 3, T0 + 1, T0 + 50)):
            await store.add(delivery(f"wf-{i}"))
            await store.ready(f"wf-{i}", due)
        claimed = await store.claim(T0 + 10, 10, 30)
        assert [d.execution_id for d in claimed] == ["wf-1", "wf-0"]

    async def test_a_claimed_delivery_is_not_claimed_again_until_its_lease_ends(
        self, store: WebhookOutbox
    ) -> None:
        await store.add(delivery())
        await store.ready("wf-1", T0)
        assert len(await store.claim(T0, 10, 30)) == 1
        assert await store.claim(T0 + 29, 10, 30) == []
        assert [d.execution_id for d in await store.claim(T0 + 31, 10, 30)] == ["wf-1"]

    async def test_concurrent_claims_share_nothing(self, store: WebhookOutbox) -> None:
        for i in range(20):
            await store.add(delivery(f"wf-{i}"))
            await store.ready(f"wf-{i}", T0)
        batches = await asyncio.gather(*(store.claim(T0 + 1, 7, 30) for _ in range(4)))
        ids = [d.execution_id for batch in batches for d in batch]
        assert sorted(ids) == sorted(f"wf-{i}" for i in range(20))

    async def test_a_failed_attempt_is_rescheduled_and_counted(self, store: WebhookOutbox) -> None:
        await store.add(delivery())
        await store.ready("wf-1", T0)
        (claimed,) = await store.claim(T0, 10, 30)
        claimed.attempts, claimed.last_status, claimed.last_error = 1, 503, "HTTP 503"
        claimed.next_at = T0 + 1
        await store.attempted(claimed)
        got = await store.get("wf-1")
        assert got is not None
        assert (got.state, got.attempts, got.last_status, got.last_error) == (
            "pending",
            1,
            503,
            "HTTP 503",
        )
        # the lease was released: due again at next_at, not after the lease
        assert [d.attempts for d in await store.claim(T0 + 1, 10, 30)] == [1]

    async def test_delivered_and_failed_are_final_and_purged(self, store: WebhookOutbox) -> None:
        for name, state in (("wf-a", "delivered"), ("wf-b", "failed")):
            await store.add(delivery(name))
            await store.ready(name, T0)
            (claimed,) = await store.claim(T0, 10, 30)
            claimed.state, claimed.attempts, claimed.next_at = state, 1, None
            claimed.delivered_at = T0 if state == "delivered" else None
            await store.attempted(claimed)
        await store.add(delivery("wf-c"))
        assert await store.claim(T0 + 1000, 10, 30) == []
        got = await store.get("wf-a")
        assert got is not None and (got.state, got.delivered_at) == ("delivered", T0)
        assert await store.purge(T0 + 1) == 2
        assert await store.get("wf-a") is None and await store.get("wf-b") is None
        assert await store.get("wf-c") is not None  # unfinished: never purged

    async def test_add_replaces_an_earlier_delivery_of_the_execution(
        self, store: WebhookOutbox
    ) -> None:
        await store.add(delivery())
        await store.ready("wf-1", T0)
        await store.add(Delivery("wf-1", URL + "/other", T0 + 5))
        got = await store.get("wf-1")
        assert got is not None and (got.url, got.state) == (URL + "/other", "waiting")
