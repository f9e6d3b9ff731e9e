"""Retry Hub calls on transient failures (rate limits, 5xx, dropped connections) with backoff."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import httpx2
from huggingface_hub.errors import HfHubHTTPError

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: The statuses and errors huggingface_hub's own ``http_backoff`` treats as transient.
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)
TRANSIENT_ERRORS = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError, ConnectionError)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, HfHubHTTPError):
        return error.response is not None and error.response.status_code in TRANSIENT_STATUS
    return isinstance(error, TRANSIENT_ERRORS)


def with_retries(call: Callable[..., T], *args, attempts: int = 6, base_delay: float = 1.0, max_delay: float = 60.0, **kwargs) -> T:
    """``call(*args, **kwargs)``, retried with jittered exponential backoff on transient errors."""
    for attempt in range(1, attempts + 1):
        try:
            return call(*args, **kwargs)
        except Exception as error:
            # huggingface_hub wraps some failures (e.g. LFS uploads) in RuntimeError: look at the cause too.
            cause = error if is_transient(error) else error.__cause__
            if attempt == attempts or cause is None or not is_transient(cause):
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (1 + random.random() / 2)
            logger.warning(
                "%s failed (%s); retrying in %.1fs (%d/%d)",
                getattr(call, "__name__", call),
                error,
                delay,
                attempt,
                attempts - 1,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")
