"""Discover Weekly models on real listening data: HetRec 2011 Last.fm (1,892 users x 17,632 artists).

    python benchmarks/hetrec_eval.py                       # needs ../shared/data/lastfm-hetrec-2k
    python benchmarks/hetrec_eval.py --path /data/hetrec/user_artists.dat --seeds 42,43

The HetRec preset of ``benchmarks/playcount_eval.py`` (same models, split, metrics and grid options):
``--path P`` is ``--source play_counts:hetrec=P``, default the shared copy of ``user_artists.dat``.
HetRec has play counts but no timestamps, so per user a pseudo-random 20% of their artists are held out
(:func:`spotrec.evaluation.split.holdout_split`); counts become confidence with ``log1p``; the "track"
of the Discover Weekly models is an artist here. Compared in one process: most-popular unheard, item
co-occurrence, Spark ALS (``--solvers mllib,cg``, a small grid) and the ``implicit`` library's ALS.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playcount_eval import build_parser, main

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "lastfm-hetrec-2k" / "user_artists.dat"


def hetrec_main(argv: list[str] | None = None) -> int:
    """``playcount_eval`` with ``--path`` (HetRec's ``user_artists.dat`` or its folder) for ``--source``."""
    parser = build_parser("hetrec_eval", (__doc__ or "").splitlines()[0], source_required=False)
    parser.add_argument("--path", default=str(DEFAULT_PATH), help="HetRec user_artists.dat (or its folder)")
    args = sys.argv[1:] if argv is None else list(argv)
    known, _ = parser.parse_known_args(args)
    if known.source is None:
        args = [*args, "--source", f"play_counts:hetrec={known.path}"]
    return main(args, prog="hetrec_eval", parser=parser)


if __name__ == "__main__":
    sys.exit(hetrec_main())
