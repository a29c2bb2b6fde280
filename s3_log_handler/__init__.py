"""s3_log_handler: ship analytics records from ordinary ``logging`` calls to S3.

Public names: :class:`S3Handler`, :class:`AnalyticsJsonFormatter`, :func:`cloudwatch_handler`,
:func:`configure`; for stopping without losing a record: :func:`aflush_all`,
:func:`flush_on_signals`, :func:`flush_on_return` and :mod:`s3_log_handler.asgi`.
"""

from ._cloudwatch import cloudwatch_handler
from ._config import configure
from ._flush_all import aflush_all
from ._formatter import AnalyticsJsonFormatter
from ._handler import S3Handler
from ._lambda import flush_on_return
from ._signals import flush_on_signals

__all__ = ["AnalyticsJsonFormatter", "S3Handler", "aflush_all", "cloudwatch_handler",
           "configure", "flush_on_return", "flush_on_signals"]
