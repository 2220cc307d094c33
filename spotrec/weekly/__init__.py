"""Discover Weekly (pure model code): implicit ALS, blocked top-N of unheard tracks, the weekly playlist with
its artist cap, similar tracks and taste clusters. The ``spotrec weekly`` step (:mod:`spotrec.steps.weekly`)
reads and writes the tables."""
