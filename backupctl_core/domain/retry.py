"""Retry with exponential backoff for the stages dump…cleanup."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

from attrs import frozen

from backupctl_core.domain.errors import PluginError

T = TypeVar("T")


@frozen
class RetryPolicy:
    """``retries`` extra attempts after the first, waiting
    ``delay_ms * 2**n`` (capped, with up to 10% jitter) between them."""

    retries: int = 3
    delay_ms: int = 5000
    max_delay_ms: int = 5 * 60 * 1000
    jitter: float = 0.1

    def delay_seconds(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.delay_ms * (2**attempt), self.max_delay_ms)
        return base * (1 + self.jitter * rand()) / 1000.0

    def call(
        self,
        action: Callable[[], T],
        *,
        sleep: Callable[[float], None],
        on_retry: Callable[[int, Exception], None] = lambda attempt, error: None,
    ) -> tuple[T, int]:
        """Run ``action``; return its result and how many retries it took.

        Only a ``PluginError`` marked retryable is retried: a wrong password or
        a missing key fails at once. The exception raised last carries the
        retry count as ``retries_used``.
        """
        attempt = 0
        while True:
            try:
                return action(), attempt
            except PluginError as error:
                if not error.retryable or attempt >= self.retries:
                    error.retries_used = attempt  # type: ignore[attr-defined]
                    raise
                on_retry(attempt + 1, error)
                sleep(self.delay_seconds(attempt))
                attempt += 1
