"""A request budget per client (the `limits` library), so one caller cannot take the service
from the others."""

import math
import time

import limits
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from coverage_serving.errors import ServingError
from coverage_serving.online.auth import Client


class RateLimitedError(ServingError):
    """The client spent its budget for the current window."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimiter:
    def __init__(self, default: str, storage_uri: str) -> None:
        self._default = limits.parse(default)
        # A sliding window counter: two counters per client, no per-hit timestamps to keep.
        self._limiter = SlidingWindowCounterRateLimiter(storage_from_string(storage_uri))
        self._parsed: dict[str, limits.RateLimitItem] = {}

    def spend(self, client: Client) -> None:
        """Count one request of `client`, or RateLimitedError when its budget is spent."""
        limit = self._limit_of(client)
        if self._limiter.hit(limit, client.id):
            return
        reset_at = self._limiter.get_window_stats(limit, client.id).reset_time
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise RateLimitedError(
            f"client {client.id!r} is over its rate limit of {limit}; retry in {retry_after} s",
            retry_after,
        )

    def _limit_of(self, client: Client) -> limits.RateLimitItem:
        if client.rate_limit is None:
            return self._default
        if client.rate_limit not in self._parsed:
            self._parsed[client.rate_limit] = limits.parse(client.rate_limit)
        return self._parsed[client.rate_limit]
