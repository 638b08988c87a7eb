"""Installs `research/stall_watch.py`'s watch in a child Python process when `STALL_WATCH` is set."""
import os

if os.environ.get("STALL_WATCH"):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import stall_watch

    stall_watch.install()
