"""Usage accounting and the shared call budget."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields

from promptopt.errors import BudgetExhausted


@dataclass
class Usage:
    """What LLM calls cost: counts, tokens and dollars (where LiteLLM knows prices).

    ``calls`` counts requests actually sent to a provider; ``cache_hits`` those
    answered from the disk cache; ``failures`` requests that failed for good and
    ``retries`` the extra attempts of retried requests (a request counts once in
    ``calls`` or ``failures`` however many attempts it took). Token counts include
    cached answers (they are what the request would cost), ``cost`` only what was
    really paid.
    """

    calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def requests(self) -> int:
        """Calls plus cache hits."""
        return self.calls + self.cache_hits

    def add(
        self,
        *,
        cached: bool,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
        failed: bool = False,
    ) -> None:
        """Record one request."""
        with self._lock:
            if failed:
                self.failures += 1
                return
            if cached:
                self.cache_hits += 1
            else:
                self.calls += 1
                self.cost += cost
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens

    def retried(self) -> None:
        """Record one more attempt of a request (a retry after a transient error)."""
        with self._lock:
            self.retries += 1

    def as_dict(self) -> dict[str, float | int]:
        """A JSON-ready snapshot."""
        with self._lock:
            data: dict[str, float | int] = {
                f.name: getattr(self, f.name) for f in fields(self) if f.name != "_lock"
            }
        data["requests"] = data["calls"] + data["cache_hits"]
        return data

    def since(self, before: dict[str, float | int]) -> dict[str, float | int]:
        """The difference between now and an earlier :meth:`as_dict` snapshot."""
        now = self.as_dict()
        return {k: round(now[k] - before.get(k, 0), 10) for k in now}


class Budget:
    """A shared maximum number of LLM requests (recovery and proposer alike).

    Cache hits count too: the budget bounds the *search*, so a rerun served from
    the cache follows exactly the same path and stops at the same point.

    Args:
        limit: Maximum requests, or None for unlimited.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.spent = 0
        self.reserved = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> float:
        """Requests still allowed (outside any reservation); ``inf`` if unlimited."""
        if self.limit is None:
            return float("inf")
        return max(0, self.limit - self.spent - self.reserved)

    def can_afford(self, n: int) -> bool:
        """Whether ``n`` more requests fit."""
        return n <= self.remaining

    def charge(self, n: int = 1) -> None:
        """Spend ``n`` requests at once, or raise :class:`BudgetExhausted` spending nothing."""
        with self._lock:
            if self.limit is not None and self.spent + self.reserved + n > self.limit:
                raise BudgetExhausted(
                    f"budget of {self.limit} LLM calls exhausted "
                    f"({self.spent} spent, {self.reserved} reserved, {n} more requested)"
                )
            self.spent += n

    def reserve(self, n: int) -> int:
        """Set aside up to ``n`` requests that :meth:`charge` cannot touch; returns the amount."""
        with self._lock:
            if self.limit is None:
                amount = n
            else:
                amount = max(0, min(n, self.limit - self.spent - self.reserved))
            self.reserved += amount
            return amount

    def release(self, n: int) -> None:
        """Give back a reservation made with :meth:`reserve`."""
        with self._lock:
            self.reserved = max(0, self.reserved - n)
