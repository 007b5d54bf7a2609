"""Everything that speaks to the Docker engine. No Flask here: the worker drives it."""
