"""Model inputs derived from silver: the weighted play-count matrix, id indexes, sequences, documents."""
