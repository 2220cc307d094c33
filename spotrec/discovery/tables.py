"""Tables and column names of the discovery system (to be merged into spotrec.tables / spotrec.columns).

Kept here while the central registry is owned by the lead; the specs use the same :class:`TableSpec`
contract, so ``Storage`` reads and writes them like any other table.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.tables import TableSpec

# Column names not (yet) in spotrec.columns.
METHOD = "method"
VECTOR = "vector"
DISTANCE = "distance"
TOKEN = "token"
TOKENS = "tokens"
TRACKS = "tracks"
DOC_ID = "doc_id"
DOC_KIND = "doc_kind"
COUNT = "count"
INPUTS = "inputs"
TARGET = "target"
INPUT_TOKENS = "input_tokens"
TARGET_TOKEN = "target_token"
WINDOW_END = "window_end"


def float_vector(column: str | Column) -> Column:
    """``column`` as array<float> with non-null elements, the tables' vector type.

    Spark cannot cast an array whose elements may be null into one whose elements may not, and frames built
    from Python or ``mapInPandas`` always declare nullable elements; a null element (never produced by the
    models) would become 0.
    """
    col = F.col(column) if isinstance(column, str) else column
    return F.transform(col.cast("array<float>"), lambda x: F.coalesce(x, F.lit(0.0).cast("float")))


_FLOATS = T.ArrayType(T.FloatType(), containsNull=False)
_S, _I = T.StringType(), T.IntegerType()

TRACK_EMBEDDINGS = TableSpec(
    "gold",
    "track_embeddings",
    T.StructType(
        [
            T.StructField(C.TRACK_ID, _S, False),
            T.StructField(METHOD, _S, False),
            T.StructField(VECTOR, _FLOATS, False),
            T.StructField(C.MODEL_VERSION, _S, False),
        ]
    ),
    keys=(C.TRACK_ID, METHOD),
    produced_by="discovery",
    description="word2vec song vectors learnt from playlists and sessions (cbow_ns: torch; sg_hs: MLlib).",
    column_docs={
        METHOD: "cbow_ns (CBOW + negative sampling, torch) or sg_hs (skip-gram + hierarchical softmax, MLlib)",
        VECTOR: "the song vector (vector_size floats)",
    },
)

USER_TASTE_VECTORS = TableSpec(
    "gold",
    "user_taste_vectors",
    T.StructType(
        [
            T.StructField(C.USER_ID, _S, False),
            T.StructField(VECTOR, _FLOATS, False),
            T.StructField(C.MODEL_VERSION, _S, False),
        ]
    ),
    keys=(C.USER_ID,),
    produced_by="discovery",
    description=(
        "Each user's taste vector from their last n plays: the RNN's query in song-vector space (l2/cosine loss: "
        "the predicted next song vector; softmax loss: scores songs by taste . vector + song bias)."
    ),
)

RNN_RECOMMENDATIONS = TableSpec(
    "gold",
    "rnn_recommendations",
    T.StructType(
        [
            T.StructField(C.USER_ID, _S, False),
            T.StructField(C.RANK, _I, False),
            T.StructField(C.TRACK_ID, _S, False),
            T.StructField(DISTANCE, T.DoubleType(), False),
            T.StructField(C.MODEL_VERSION, _S, False),
        ]
    ),
    keys=(C.USER_ID, C.RANK),
    produced_by="discovery",
    description="Nearest songs (Annoy) to each user's taste vector, without songs they played recently.",
    column_docs={
        DISTANCE: "Annoy distance between the taste vector and the song vector (angular by default); for the "
        "softmax RNN, the song's score taste . vector + bias (higher is better)"
    },
)

DISCOVERY_TABLES: tuple[TableSpec, ...] = (TRACK_EMBEDDINGS, USER_TASTE_VECTORS, RNN_RECOMMENDATIONS)
