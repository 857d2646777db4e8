"""Use cases: the only layer that opens sessions and emits events (see ``unit.py``)."""
