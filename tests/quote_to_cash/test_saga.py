"""The compensation stack on its own: newest first, each once, a failed compensation reported
(and the rest still undone), never swallowed."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError

from workflows.governed.saga import Saga


def failure(activity: str) -> ActivityError:
    err = ActivityError(
        "activity failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="test",
        activity_type=activity,
        activity_id="1",
        retry_state=None,
    )
    err.__cause__ = ApplicationError("vendor says no", type="stripe.not_allowed")
    return err


async def test_unwinds_newest_first_reports_failures_and_goes_on() -> None:
    ran: list[str] = []
    failed: list[str] = []

    async def on_failure(step: str, err: ActivityError) -> None:
        failed.append(f"{step}: {err.activity_type}")

    def undo(name: str, did: str = "", fail: bool = False):  # noqa: ANN202
        async def compensate() -> str:
            ran.append(name)
            if fail:
                raise failure(f"undo_{name}")
            return did

        return compensate

    saga = Saga(on_failure=on_failure)
    saga.register("crm link", undo("crm link", "restored the link"))
    saga.register("create customer", undo("create customer", fail=True))
    saga.register("create subscription", undo("create subscription", "cancelled sub_1"))
    assert saga.steps == ["crm link", "create customer", "create subscription"]

    unwound = await saga.unwind()
    assert ran == ["create subscription", "create customer", "crm link"]
    assert unwound.undone == ["cancelled sub_1", "restored the link"]
    assert unwound.failed == ["create customer: stripe.not_allowed: vendor says no"]
    assert failed == ["create customer: undo_create customer"]
    # each compensation runs once: a second unwind has nothing left
    assert (await saga.unwind()).undone == [] and ran == [
        "create subscription",
        "create customer",
        "crm link",
    ]


async def test_a_compensation_with_nothing_to_undo_reports_nothing() -> None:
    async def nothing() -> str:
        return ""

    async def never(step: str, err: ActivityError) -> None:
        raise AssertionError("no failure expected")

    saga = Saga(on_failure=never)
    saga.register("create subscription", nothing)
    assert (await saga.unwind()).undone == []
