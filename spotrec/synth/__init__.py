"""The synthetic listening world: training-scale data with a known answer.

A catalogue of artists (each mostly in one of ``taste_groups`` latent groups), albums and tracks (hidden
taste vectors near their artist's group, log-normal durations around 3.5 minutes, audio-like features
correlated with the group, Zipf popularity) is listened to by users who each lean mostly to one group.
Users listen in sessions spread over ``weeks`` weeks, in four contexts: their own playlists, albums,
radio seeded by a track, and search (a track, then perhaps more by its artist); they keep replaying a
few favourites. A hidden :class:`~spotrec.synth.response.ResponseModel` decides each play's outcome
(skip within 30 s, partial, complete), its length, saves and when the listener quits, from the
user-track taste affinity, popularity, position in the session and the current skip streak.

Because the truth is known (``{artifacts_dir}/ground_truth``: users' and tracks' groups and vectors, the
response model, the injected faults), the pipeline can be checked end to end: ingest must quarantine the
deliberately bad rows, ALS / word2vec must recover the taste groups, and the RL user model can be compared
with the real listener (sim-to-real).

Modules: :mod:`~spotrec.synth.world` (``generate_world``), :mod:`~spotrec.synth.catalogue` (artists,
albums, tracks), :mod:`~spotrec.synth.listeners` (profiles, playlists, sessions, faults),
:mod:`~spotrec.synth.response` (``ResponseModel``), :mod:`~spotrec.synth.truth` (``load_ground_truth``).
"""
