"""Leaf helpers shared by several parts (no imports from the rest of the package but
``errors`` and ``limits``); not public API."""
