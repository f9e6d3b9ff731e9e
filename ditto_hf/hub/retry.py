"""Retry Hub calls on transient failures (rate limits, 5xx, dropped connections) with backoff, and say
in one line what a failure the user can fix means (bad repo id, token, permissions, missing repo)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import httpx2
from huggingface_hub.errors import HfHubHTTPError

from ditto_hf.errors import DittoError

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


def dataset_repo_id(text: str) -> str:
    """``ns/name`` from ``ns/name`` or ``hf://datasets/ns/name``; one clear line for anything else."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id = text.removeprefix("hf://").removeprefix("datasets/").rstrip("/")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise DittoError(f"{text!r} is not a dataset repo id: write it NAMESPACE/NAME (letters, digits, '-', '_', '.')") from error
    if "/" not in repo_id:
        raise DittoError(f"{text!r} is not a dataset repo id: write it NAMESPACE/NAME (your user or organisation, then the name)")
    return repo_id


def explain(error: BaseException, repo_id: str) -> DittoError | None:
    """The one-line meaning of a Hub failure a user can fix (token, permissions, missing repo), or None."""
    from huggingface_hub.errors import LocalTokenNotFoundError, RepositoryNotFoundError

    if isinstance(error, LocalTokenNotFoundError):
        return DittoError(f"{repo_id}: no Hub token; log in with `hf auth login` or pass --token / set HF_TOKEN")
    status = error.response.status_code if isinstance(error, HfHubHTTPError) and error.response is not None else None
    if status == 401:
        return DittoError(f"{repo_id}: the Hub rejected the token (401); log in with `hf auth login` or pass a valid --token / HF_TOKEN")
    if status == 403:
        return DittoError(f"{repo_id}: the token may not do this (403); use a token with write access to {repo_id.split('/')[0]}")
    if isinstance(error, RepositoryNotFoundError) or status == 404:
        return DittoError(f"{repo_id}: no such dataset repo on the Hub (or it is private: pass --token); check the name")
    return None


@contextmanager
def explained_hub_errors(repo_id: str) -> Iterator[None]:
    """Turn Hub failures a user can fix into one-line :class:`DittoError` naming ``repo_id``."""
    try:
        yield
    except Exception as error:
        explained = explain(error, repo_id) or (explain(error.__cause__, repo_id) if error.__cause__ else None)
        if explained is None:
            raise
        raise explained from error
