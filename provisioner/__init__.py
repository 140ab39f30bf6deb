"""provisioner: create Qoder Cloud Agents Environments in bulk.

The public Python API is what this module exports (pinned by
``tests/test_public_api.py``); everything else is internal and may change::

    import provisioner

    async with provisioner.Provisioner(token=TOKEN, concurrency=8, rate=20) as p:
        summary = await p.run(bodies, results="results.jsonl")
        print(summary.counts)  # {"created": 3, "exists": 1, "failed": 0, ...}
        record = await p.provision(body)  # record.status, record.id
"""

from provisioner.core.service import Provisioner
from provisioner.core.summary import Summary
from provisioner.errors import (
    ApiError,
    AuthError,
    ConfigError,
    ConflictError,
    LockedError,
    ProvisionerError,
    ResultLogError,
    RetryableApiError,
    SpecError,
    TransportError,
)
from provisioner.pacing.retry import RetryPolicy
from provisioner.results import ErrorInfo, Result, Status
from provisioner.settings import VERSION

__version__ = VERSION

__all__ = [
    "ApiError",
    "AuthError",
    "ConfigError",
    "ConflictError",
    "ErrorInfo",
    "LockedError",
    "Provisioner",
    "ProvisionerError",
    "Result",
    "ResultLogError",
    "RetryPolicy",
    "RetryableApiError",
    "SpecError",
    "Status",
    "Summary",
    "TransportError",
    "__version__",
]
