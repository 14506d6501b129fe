"""Web framework integrations: :mod:`kvkit.ext.fastapi`, ``flask`` and ``starlette``.

:mod:`kvkit.ext.starlette` gives any Starlette or FastAPI app server-side sessions. Each
module imports its framework; ``import kvkit`` imports none. Install the extra
(``pip install "kvkit-sdk[fastapi]"`` / ``"kvkit-sdk[flask]"`` / ``"kvkit-sdk[starlette]"``)
to use one.
"""
