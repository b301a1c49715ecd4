"""Data sources: named datasets, image folders and procedural sets (see :mod:`.base`)."""
