"""kvkit's benchmark suite: ``python -m benchmarks`` or ``nox -s bench``.

Each row compares one kvkit operation with its baseline (raw redis-py, cashews, aiocache,
cachetools...) in the same process, interleaved in rounds, and reports the median ratio
of throughputs. Rows live in area modules (``cache_redis``, ``cache_memory``,
``imports``) and register themselves in :data:`benchmarks.harness.COMPARISONS`; see
:mod:`benchmarks.harness` for how to add one. ``python -m benchmarks.profiling`` profiles
kvkit's hot paths.
"""
