# SYNC-TEXT: "single source of truth, written async; ``kvkit/_sync`` is generated from it."
#   -> "sync twin, generated from ``kvkit/_async`` (the source of truth) -- do not edit."
"""The API's single source of truth, written async; ``kvkit/_sync`` is generated from it."""
