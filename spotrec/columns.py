"""Column names used across tables, as constants (one spelling everywhere)."""

# Canonical listen event (silver.listen_events)
EVENT_ID = "event_id"
USER_ID = "user_id"
TRACK_ID = "track_id"
TS = "ts"
EVENT_DATE = "event_date"
MS_PLAYED = "ms_played"
TRACK_DURATION_MS = "track_duration_ms"
CONTEXT_TYPE = "context_type"
CONTEXT_ID = "context_id"
REASON_START = "reason_start"
REASON_END = "reason_end"
SKIPPED = "skipped"
SHUFFLE = "shuffle"
SAVED = "saved"
SOURCE = "source"
SESSION_ID = "session_id"
SESSION_POSITION = "session_position"

# Track metadata carried by readers (silver.tracks)
TRACK_NAME = "track_name"
ARTIST_ID = "artist_id"
ARTIST_NAME = "artist_name"
ALBUM_ID = "album_id"
ALBUM_NAME = "album_name"
DURATION_MS = "duration_ms"

# Bronze / quarantine bookkeeping
SOURCE_FILE = "source_file"
RECORD_NO = "record_no"
RAW = "raw"
INGEST_TIME = "ingest_time"
INGEST_RUN_ID = "ingest_run_id"
REASON = "reason"

# Playlists (silver.playlists)
PLAYLIST_ID = "playlist_id"
PLAYLIST_NAME = "playlist_name"
POSITION = "position"

# Pre-aggregated counts (silver.play_counts)
PLAY_COUNT = "play_count"

# Interactions (gold.interactions)
USER_IDX = "user_idx"
TRACK_IDX = "track_idx"
CONFIDENCE = "confidence"
PLAYS = "plays"
SKIPS = "skips"
SAVES = "saves"
LAST_PLAYED = "last_played"

# Models and ops
RUN_ID = "run_id"
MODEL = "model"
MODEL_VERSION = "model_version"
METRIC = "metric"
K = "k"
VALUE = "value"
RANK = "rank"
SCORE = "score"
WEEK = "week"

# Song vectors, documents and the taste RNN (gold.track_embeddings, gold.user_taste_vectors, ...)
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

# RL playlists (gold.rl_playlists, gold.user_model_metrics) and candidate pools
SESSION = "session"
Q_VALUE = "q_value"
PREDICTED_SKIP = "predicted_skip"
POLICY_VERSION = "policy_version"
CANDIDATE_IDS = "candidate_ids"
CANDIDATE_FEATURES = "candidate_features"
CANDIDATE_POPULARITY = "candidate_popularity"
CANDIDATE_SCORES = "candidate_scores"
HEAD = "head"
PREDICTOR = "predictor"
BIN = "bin"
CREATED_AT = "created_at"
