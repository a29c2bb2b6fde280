"""s3_log_handler: ship analytics records from ordinary ``logging`` calls to S3.

Public names: :class:`S3Handler`, :class:`AnalyticsJsonFormatter`, :func:`cloudwatch_handler`,
:func:`configure`.
"""

from ._cloudwatch import cloudwatch_handler
from ._config import configure
from ._formatter import AnalyticsJsonFormatter
from ._handler import S3Handler

__all__ = ["AnalyticsJsonFormatter", "S3Handler", "cloudwatch_handler", "configure"]
