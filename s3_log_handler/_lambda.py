"""``@flush_on_return``: AWS Lambda handlers flush every live handler before they return.

Between invocations Lambda freezes the execution environment: background threads (the
upload threads included) do not run until the next invocation thaws it, and an environment
that is never invoked again is shut down with whatever it held in memory. So records must be
delivered before the handler returns.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast, overload

from ._aio import run_off_loop
from ._diagnostics import logger
from ._flush_all import FlushOutcome, default_timeout, flush_handlers, live_handlers, report

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds kept back from the invocation's remaining time: Lambda still has to send the
#: response, and a handler past its deadline fails with "Task timed out".
DEFAULT_MARGIN = 0.2

_HINT = ("; Lambda freezes background threads once the handler returns: they are sent when "
         "this execution environment is invoked again, or lost if it is shut down first")


@overload
def flush_on_return(function: F, *, margin: float = DEFAULT_MARGIN) -> F: ...
@overload
def flush_on_return(function: None = None, *,
                    margin: float = DEFAULT_MARGIN) -> Callable[[F], F]: ...


def flush_on_return(function: F | None = None, *,
                    margin: float = DEFAULT_MARGIN) -> F | Callable[[F], F]:
    """Decorate a Lambda handler (``def`` or ``async def``) so that it flushes every live
    :class:`S3Handler` before it returns, or raises (the exception is re-raised unchanged).

    The wait is bounded by the invocation's remaining time,
    ``context.get_remaining_time_in_millis()`` minus ``margin`` seconds (0.2 by default),
    and never exceeds the largest ``close_timeout``; without a Lambda context (a second
    argument or ``context=`` with that method) only ``close_timeout`` bounds it. Whatever is
    still pending then is logged as one WARNING on the ``s3_log_handler`` logger. The
    decorator itself never raises and never changes the handler's result. When applied (at
    import, Lambda's init phase) it also makes each live handler's S3 client, so that no
    invocation pays for botocore's set-up: call ``configure()`` before decorating.

    Usable bare (``@flush_on_return``) or with options (``@flush_on_return(margin=0.5)``).
    """
    if margin < 0:
        raise ValueError(f"flush_on_return: margin must be >= 0 seconds, got {margin!r}")

    def decorate(handler: F) -> F:
        _prepare_clients()
        if inspect.iscoroutinefunction(handler):
            @functools.wraps(handler)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await handler(*args, **kwargs)
                finally:
                    budget = _budget(args, kwargs, margin)
                    try:
                        _report(await run_off_loop(lambda: flush_handlers(budget),
                                                   name="s3-log-handler-lambda-flush"))
                    except Exception:
                        logger.exception("flush_on_return: flushing analytics records failed")
            return cast(F, async_wrapper)

        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            finally:
                try:
                    _report(flush_handlers(_budget(args, kwargs, margin)))
                except Exception:
                    logger.exception("flush_on_return: flushing analytics records failed")
        return cast(F, wrapper)

    return decorate(function) if function is not None else decorate


def _prepare_clients() -> None:
    """Make every live handler's S3 client now. The decorator is applied when the function's
    module is imported, in Lambda's init phase, so the first invocation of an environment
    does not spend its time loading botocore's S3 model (0.1-0.3 s of CPU, in calls that
    hold the GIL: every thread hand-off of the flush would wait behind it)."""
    for live in live_handlers():
        live._prepare_client()


def _budget(args: tuple[Any, ...], kwargs: Mapping[str, Any], margin: float) -> float:
    """Seconds the flush may take now: the invocation's remaining time minus ``margin``,
    capped at the largest ``close_timeout``; never negative."""
    limit = default_timeout()
    context = kwargs.get("context", args[1] if len(args) > 1 else None)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        with contextlib.suppress(Exception):  # a context that cannot tell: close_timeout
            limit = min(limit, float(remaining()) / 1000.0 - margin)
    return max(0.0, limit)


def _report(outcome: FlushOutcome) -> None:
    # Every invocation passes here: success is not worth a line in CloudWatch each time.
    report(outcome, "flush_on_return", _HINT, success_level=logging.DEBUG)
