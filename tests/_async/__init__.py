"""Conformance tests written once, async; ``tests/_sync`` is generated from them."""
