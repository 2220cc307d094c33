"""Global row numbers and running sums without a single-partition window.

``row_number() over (order by x)`` with no ``partitionBy`` moves every row to one partition (Spark warns
"No Partition Defined for Window operation!"), so on a cluster it runs on one core whatever the data's
size. The helpers here compute the same numbers the way a distributed sort does:

1. range-partition the rows on the ordering (partition ``i`` holds the ``i``-th key range; equal keys land
   in the same partition) and sort within each partition;
2. number the rows (or sum the weights) inside each partition;
3. count (or sum) each partition: one small row per partition reaches the driver, and its running total
   is that partition's offset.

The result equals the single-partition window row for row, whatever the range bounds or the partition
count, so it is deterministic for the same rows in any input order. Step 2 is materialised with
``localCheckpoint`` before step 3 reads it: the range bounds come from a sample whose rows depend on
shuffle fetch order, and the counts and the numbers must see the same partitions.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

_PID = "_ordinal_pid"
_POS = "_ordinal_pos"
_LOCAL_MASK = (1 << 33) - 1  # monotonically_increasing_id = partition id << 33 | position in partition


def _partitions(df: DataFrame, partitions: int | None) -> int:
    if partitions is not None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        return partitions
    return max(1, int(df.sparkSession.conf.get("spark.sql.shuffle.partitions") or "1"))


def _ranged(df: DataFrame, order: Sequence[Column | str], partitions: int | None) -> DataFrame:
    if not order:
        raise ValueError("order must name at least one column")
    cols = [F.col(c) if isinstance(c, str) else c for c in order]
    return df.repartitionByRange(_partitions(df, partitions), *cols).sortWithinPartitions(*cols)


def _offsets(per_partition: dict[int, int]) -> tuple[Column, int]:
    """``offset[pid]`` as an array literal indexed by the partition id, and the grand total."""
    size = max(per_partition, default=-1) + 1
    offsets, total = [], 0
    for pid in range(size):
        offsets.append(total)
        total += per_partition.get(pid, 0)
    array = F.array(*[F.lit(o).cast("long") for o in offsets]) if offsets else F.array(F.lit(0).cast("long"))
    return array[F.col(_PID)], total


def global_row_number(
    df: DataFrame, order: Sequence[Column | str], name: str, *, start: int = 0, partitions: int | None = None
) -> DataFrame:
    """``df`` plus ``name`` (long) = ``start + row_number() over (order by *order) - 1``.

    ``order`` should break every tie (end with a unique key) for the numbering to be deterministic, as for
    the window it replaces.

    Args:
        df: any rows.
        order: sort columns (``F.desc(...)`` allowed), the same as the window's ``orderBy``.
        name: the output column.
        start: the first number (0 gives 0-based positions).
        partitions: range partitions; default ``spark.sql.shuffle.partitions``.
    """
    staged = (
        _ranged(df, order, partitions)
        .withColumn(_PID, F.spark_partition_id())
        .withColumn(_POS, F.monotonically_increasing_id().bitwiseAND(F.lit(_LOCAL_MASK)))
        .localCheckpoint(eager=True)
    )
    counts = {int(r[0]): int(r[1]) for r in staged.groupBy(_PID).count().collect()}
    offset, _ = _offsets(counts)
    return staged.withColumn(name, (F.lit(start).cast("long") + offset + F.col(_POS)).cast("long")).drop(_PID, _POS)


def global_running_sum(
    df: DataFrame,
    order: Sequence[Column | str],
    weight: str,
    name: str,
    *,
    total: str | None = None,
    partitions: int | None = None,
) -> DataFrame:
    """``df`` plus ``name`` = the sum of ``weight`` over all rows strictly before each row in ``order``.

    The same as ``sum(weight) over (order by *order rows between unbounded preceding and 1 preceding)``,
    0 for the first row (``weight`` must be an integral column). ``total``, when given, names a column with
    the sum over all rows (``sum(weight) over ()``).
    """
    staged = _ranged(df, order, partitions).withColumn(_PID, F.spark_partition_id()).localCheckpoint(eager=True)
    sums = {int(r[0]): int(r[1] or 0) for r in staged.groupBy(_PID).agg(F.sum(F.col(weight).cast("long"))).collect()}
    offset, grand = _offsets(sums)
    cols = [F.col(c) if isinstance(c, str) else c for c in order]
    before = Window.partitionBy(_PID).orderBy(*cols).rowsBetween(Window.unboundedPreceding, -1)
    out = staged.withColumn(name, offset + F.coalesce(F.sum(F.col(weight).cast("long")).over(before), F.lit(0)))
    if total is not None:
        out = out.withColumn(total, F.lit(grand).cast("long"))
    return out.drop(_PID)
