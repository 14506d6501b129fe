"""The package version, in a module of its own so that any module can import it.

(``kvkit/__init__`` re-exports it; importing it from there would make every module that
needs it depend on the whole public surface, and so on itself.)
"""

__version__ = "0.1.0"
