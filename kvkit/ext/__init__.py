"""Web framework integrations: :mod:`kvkit.ext.fastapi` and :mod:`kvkit.ext.flask`.

Each module imports its framework; ``import kvkit`` imports neither. Install the extra
(``pip install "kvkit-sdk[fastapi]"`` / ``"kvkit-sdk[flask]"``) to use one.
"""
