"""spotrec: Spotify's three published recommendation systems as a Spark + Delta pipeline."""

__version__ = "0.1.0"
