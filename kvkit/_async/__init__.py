"""The API's single source of truth, written async; ``kvkit/_sync`` is generated from it."""
