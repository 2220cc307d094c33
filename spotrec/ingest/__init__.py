"""raw -> bronze -> silver (+ quarantine): validation, deduplication, idempotent MERGE writes."""
