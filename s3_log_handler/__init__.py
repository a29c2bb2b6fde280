"""s3_log_handler: ship analytics records from ordinary ``logging`` calls to S3.

Public names: :class:`S3Handler`, :class:`AnalyticsJsonFormatter`, :func:`cloudwatch_handler`,
:func:`configure`.
"""

from .cloudwatch import cloudwatch_handler
from .config import configure
from .formatter import AnalyticsJsonFormatter
from .handler import S3Handler

__all__ = ["AnalyticsJsonFormatter", "S3Handler", "cloudwatch_handler", "configure"]
