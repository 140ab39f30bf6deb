"""The result log: the record of each spec, its writer, reading it back to resume, its lock.

- :mod:`~provisioner.results.record`: :class:`Result`, the statuses.
- :mod:`~provisioner.results.sink`: :class:`ResultSink`, crash-safe appends.
- :mod:`~provisioner.results.resume`: what an earlier run settled; compaction.
- :mod:`~provisioner.results.lock`: one run per result log.
"""

from provisioner.results.record import (
    STATUSES,
    SUCCESS,
    ErrorInfo,
    Result,
    Status,
    new_run_id,
    rfc3339,
)
from provisioner.results.resume import (
    NO_TARGET,
    LogState,
    ResumeState,
    is_created_here,
    iter_records,
    prepare_resume,
    read_log,
    rewrite_log,
    set_aside,
)
from provisioner.results.sink import ResultSink, drop_torn_tail, is_regular_log

__all__ = [
    "NO_TARGET",
    "STATUSES",
    "SUCCESS",
    "ErrorInfo",
    "LogState",
    "Result",
    "ResultSink",
    "ResumeState",
    "Status",
    "drop_torn_tail",
    "is_created_here",
    "is_regular_log",
    "iter_records",
    "new_run_id",
    "prepare_resume",
    "read_log",
    "rewrite_log",
    "rfc3339",
    "set_aside",
]
