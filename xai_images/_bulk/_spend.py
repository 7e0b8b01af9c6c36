"""The spending seam of a bulk job: what the engine asks before and tells after each paid request.

Every billable request of a bulk job (a real-time generate or edit, one request added to an xAI
batch) goes through a `Spend`: the engine calls `Spend.reserve` before sending it, then exactly
one of `Spend.settle` (the request may have run: it is paid, or may be) or `Spend.release` (it
provably did not run: refused, never sent, stopped before sending). A budget implements it; the
default, `NO_SPEND`, allows everything and records nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ._budget import Budget, Reservation

if TYPE_CHECKING:
    from .._api._requests import Request
    from ._progress import Progress

__all__ = ["NO_SPEND", "BudgetSpend", "NoSpend", "Spend", "SpendRefused"]


class SpendRefused(Exception):
    """Raised by `Spend.reserve` when the request must not be sent (the budget is reached).

    The engine does not send the item and records nothing for it (a later run with a higher
    budget does it), stops starting new work, and ends with ``progress.budget_reached`` set.

    Attributes:
        reason: what to tell the user, e.g. ``"the budget of $5.00 is reached"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Spend(Protocol):
    """Reserve before each paid request, then settle or release it.

    The engine calls these from the event loop; each must return quickly (no blocking I/O on the
    loop: a shared budget awaits its store). For each successful `reserve` the engine makes
    exactly one later call, `settle` or `release`, with what `reserve` returned.
    """

    async def reserve(self, request: Request, *, item_id: str) -> object:
        """Reserve the worst-case price of ``request`` before it is sent.

        Returns:
            a reservation (any object; the engine hands it back unchanged).

        Raises:
            SpendRefused: the request must not be sent.
        """
        ...

    async def settle(self, reservation: object, cost_in_usd_ticks: int | None) -> None:
        """The request may have run: its reservation becomes its cost.

        ``cost_in_usd_ticks`` is the cost the answer reported; ``None`` when no answer said
        (the answer was lost, or carried no ``usage``): keep the reserved worst case.
        """
        ...

    async def release(self, reservation: object) -> None:
        """The request provably did not run (never sent, or refused unbilled): free its
        reservation."""
        ...


class NoSpend:
    """The default `Spend`: allows every request, records nothing."""

    async def reserve(self, request: Request, *, item_id: str) -> object:
        """Allow the request."""
        return None

    async def settle(self, reservation: object, cost_in_usd_ticks: int | None) -> None:
        """Nothing to record."""

    async def release(self, reservation: object) -> None:
        """Nothing to free."""


NO_SPEND: Spend = NoSpend()
"""The shared no-op `Spend`."""


class BudgetSpend:
    """A `Budget` (``max_cost``) as the engine's `Spend`: a refusal raises `SpendRefused`; the
    spend so far is kept on the run's progress."""

    def __init__(self, budget: Budget, progress: Progress, *, wait: bool) -> None:
        self._budget = budget
        self._progress = progress
        self._wait = wait

    async def reserve(self, request: Request, *, item_id: str) -> object:
        reservation = await self._budget.reserve(request, item_id=item_id, wait=self._wait)
        if reservation is None:
            raise SpendRefused(f"the budget (max_cost) of {self._budget.limit} ticks is reached")
        self._progress.spent_in_usd_ticks = await self._budget.spent()
        return reservation

    async def settle(self, reservation: object, cost_in_usd_ticks: int | None) -> None:
        assert isinstance(reservation, Reservation)
        await self._budget.settle(reservation, cost_in_usd_ticks)
        self._progress.spent_in_usd_ticks = await self._budget.spent()

    async def release(self, reservation: object) -> None:
        assert isinstance(reservation, Reservation)
        await self._budget.release(reservation)
        self._progress.spent_in_usd_ticks = await self._budget.spent()
