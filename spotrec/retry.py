"""Retrying Delta writes that lose an optimistic-concurrency race.

Delta commits are atomic and optimistic: two writers that both read the same table version and then
commit conflicting changes (two MERGEs into the same partitions, two first writes into an empty
folder) make one of them fail with a ``ConcurrentAppendException`` (or ``ConcurrentTransaction``,
``ProtocolChanged``, ``MetadataChanged`` ...). The loser committed nothing, so running its whole
operation again, against the new table version, is safe whenever the operation is idempotent given
the table it reads: spotrec's insert-only ``Storage.merge_new`` re-checks the keys in the new version
(no duplicate, no lost row), ``overwrite``/``replace_where`` replace, and ``append`` of a failed commit
appended nothing.

Every write of :class:`spotrec.storage.Storage` goes through :func:`retry_on_conflict`, e.g.::

    retry_on_conflict(lambda: self._merge_new_once(spec, df), what=f"MERGE into {spec.full_name}")
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")

CONFLICT_NAMES: tuple[str, ...] = (
    "ConcurrentAppendException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "DeltaConcurrentModificationException",
)
"""Delta's commit-conflict exceptions (Python classes in ``delta.exceptions``, Scala classes in the JVM)."""


def conflict_types() -> tuple[type[BaseException], ...]:
    """The ``delta.exceptions`` classes PySpark raises for commit conflicts (empty if delta is absent)."""
    try:
        import delta.exceptions as dx
    except ImportError:  # delta-spark not installed: only name matching below applies
        return ()
    return tuple(getattr(dx, name) for name in CONFLICT_NAMES if hasattr(dx, name))


def is_conflict(exc: BaseException) -> bool:
    """True when ``exc`` is a Delta commit conflict (converted class, or a raw JVM error naming one).

    Only the error's first line is searched, so a conflict merely mentioned deep in a stack trace of
    some other failure does not count.
    """
    if isinstance(exc, conflict_types()):
        return True
    names = [type(exc).__name__]
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    names.append(first_line)
    java = getattr(exc, "java_exception", None)
    if java is not None:
        # A dead gateway must not hide the original error.
        with contextlib.suppress(Exception):
            names.append(str(java.getClass().getName()))
    return any(n in text for n in CONFLICT_NAMES for text in names)


def retry_on_conflict(
    action: Callable[[], R],
    *,
    what: str = "Delta write",
    attempts: int = 6,
    base_delay_s: float = 0.5,
    max_delay_s: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> R:
    """Run ``action``; when it fails with a Delta commit conflict, run it again (jittered backoff).

    Args:
        action: the whole write, re-reading the table each time (e.g. a ``merge_new`` call). It must be
            safe to repeat after a failed commit, which holds for spotrec's MERGE/overwrite/append.
        what: named in the log line of each retry.
        attempts: total tries, first included; the last conflict is re-raised.
        base_delay_s: first backoff; doubles per retry, with full jitter so racing writers spread out.
        max_delay_s: cap on one backoff.
        sleep: how to wait (tests pass a recorder).
        rng: jitter source (seeded in tests).

    Returns:
        What ``action`` returned.

    Raises:
        The last conflict after ``attempts`` tries, or at once any error that is not a conflict.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    rng = rng or random.Random()
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts or not is_conflict(exc):
                raise
            delay = rng.uniform(0, min(max_delay_s, base_delay_s * 2 ** (attempt - 1)))
            log.warning(
                "%s lost a commit race (%s, attempt %d of %d); retrying in %.2fs",
                what,
                type(exc).__name__,
                attempt,
                attempts,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises
