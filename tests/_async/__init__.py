# SYNC-TEXT: "written once, async; ``tests/_sync`` is generated from them." -> "generated
#   from ``tests/_async``, where they are written once."
"""Conformance tests written once, async; ``tests/_sync`` is generated from them."""
