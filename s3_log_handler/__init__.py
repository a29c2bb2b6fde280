"""s3_log_handler: ship analytics records from ordinary ``logging`` calls to S3.

Public names: :class:`S3Handler`, :class:`AnalyticsJsonFormatter`, :func:`cloudwatch_handler`,
:func:`configure`.
"""

from .handler import S3Handler

__all__ = ["S3Handler"]
