r"""The value codec: Python values to JSON bytes and back.

Values are stored as UTF-8 JSON, never pickle. Decoding untrusted bytes can only ever
produce JSON data and the types listed below; it never imports or runs anything.

Plain JSON values
-----------------
``None``, ``bool``, ``int``, ``float``, ``str``, ``list`` and ``dict`` with ``str`` keys
are stored as plain, compact JSON so that other languages can read them:
``{"a": [1, 2]}`` is stored as ``{"a":[1,2]}`` and ``"x"`` as ``"x"``. Non-ASCII text is
written as UTF-8 (not ``\uXXXX`` escapes). The orjson and the stdlib encoders produce
the same bytes, except that a float with a one-digit negative exponent differs in text
(orjson ``1e-7``, stdlib ``1e-07``); both decode to the same float.

Tagged values
-------------
Types JSON has no notation for round-trip to the same Python type through a tagged
object ``{"__kvkit__": "<tag>", "v": <json>}``, nested anywhere:

============  =========================  =============================================
tag           Python type                ``"v"`` holds
============  =========================  =============================================
``datetime``  ``datetime.datetime``      ``datetime.isoformat()``, e.g.
                                         ``"2024-05-01T12:30:00.000123+02:00"``; naive
                                         stays naive. A ``zoneinfo.ZoneInfo`` zone adds
                                         ``"tz": "Europe/Paris"`` (see below).
``date``      ``datetime.date``          ``"2024-05-01"``
``time``      ``datetime.time``          ``time.isoformat()``, e.g. ``"12:30:00+02:00"``;
                                         may also carry ``"tz"``.
``uuid``      ``uuid.UUID``              ``"12345678-1234-5678-1234-567812345678"``
``decimal``   ``decimal.Decimal``        ``str(d)``, e.g. ``"1.10"`` (exact; ``"NaN"`` ok)
``bytes``     ``bytes``                  standard base64 with padding, e.g. ``"AAH/"``
``tuple``     ``tuple``                  array of the (encoded) items
``set``       ``set``                    array of the (encoded) items, sorted when the
                                         items all have one orderable type
``frozenset`` ``frozenset``              as ``set``
``int``       ``int`` outside the        decimal string, e.g. ``"18446744073709551616"``
              64-bit range               (ints in ``[-2**63, 2**64)`` are plain numbers)
``dict``      ``dict`` that has a        the dict itself (its values encoded); this
              ``"__kvkit__"`` key        escape keeps user data from reading as a tag
============  =========================  =============================================

A ``datetime`` or ``time`` whose ``tzinfo`` is a ``zoneinfo.ZoneInfo`` carries its zone
name in an extra ``"tz"`` member and comes back with that ``ZoneInfo`` (same wall time,
offset and ``fold``). If the zone cannot be loaded where the value is read, the value
comes back with a fixed-offset ``datetime.timezone`` instead (same instant). Any other
``tzinfo`` comes back as a fixed offset.

Big integers are tagged because orjson (and many JSON readers in other languages) would
otherwise read them back as floats and silently lose digits. (JSON written by *other*
programs with plain integers outside the 64-bit range therefore decodes as ``float`` on
the orjson path and as ``int`` on the stdlib path.)

Any JSON document can be decoded. An object is read as a tag only if it has a
``"__kvkit__"`` member, and only when that name appears literally (unescaped) in the
bytes: the decoder skips the tag walk entirely when ``b'"__kvkit__"'`` is absent.

Other accepted values
---------------------
* dataclass, attrs and pydantic instances (pydantic v2 ``model_dump(mode="python")``,
  v1 ``.dict()``) are stored as their dict form and decode as a plain ``dict``; nested
  special values inside them are tagged as above.
* ``enum.Enum`` members (``IntEnum``, ``StrEnum``, ``(str, Enum)``, ...) are stored as
  their ``.value``, and other ``str``/``int``/``float`` subclasses as the plain value;
  they decode as the plain value, not the subclass.
* ``dict``/``list`` subclasses (``OrderedDict``, ``defaultdict``, ...) are stored as a
  plain object/array and decode as ``dict``/``list``. Subclasses of the tagged types
  (named tuples, ``datetime`` subclasses, ...) decode as the base type.

Everything else (``object()``, functions, sockets, ``bytearray``, custom classes, ...),
non-finite floats (NaN and infinities are not JSON), dict keys that are not ``str`` and
set items that could not be rebuilt as set items raise :class:`SerializationError`
naming the key and the offending type — never the value itself, which may be a secret.
Bytes that are not UTF-8 JSON, or hold a malformed tag, raise :class:`DecodeError`
naming the key.

A custom serializer (any object with ``dumps(value) -> bytes | str`` and
``loads(data: bytes) -> Any``) can replace all of this; its exceptions are wrapped in
:class:`SerializationError` / :class:`DecodeError` (chained with ``from``).
"""

from __future__ import annotations

import binascii
import dataclasses
import importlib.util
import json
import sys
import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, tzinfo
from enum import Enum
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from kvkit._errors import ConfigError, DecodeError, SerializationError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

__all__ = ["HAVE_ORJSON", "Codec", "Serializer", "default_codec"]


def _orjson_installed() -> bool:
    try:
        return importlib.util.find_spec("orjson") is not None
    except (ImportError, ValueError):  # a broken entry in sys.modules
        return False


HAVE_ORJSON: bool = _orjson_installed()
"""Whether orjson is installed; the built-in codec then uses it.

orjson is imported at the first encode/decode, not by ``import kvkit``: importing kvkit
loads no optional dependency, to keep it fast. The first call rebinds ``_orjson_dumps`` /
``_orjson_loads`` to orjson's own functions, so later calls pay nothing for the laziness.
"""


def _load_orjson() -> None:
    global _orjson_dumps, _orjson_loads
    try:
        import orjson
    except ImportError as exc:
        raise ConfigError(f"orjson is installed but cannot be imported: {exc}") from None
    _orjson_dumps = orjson.dumps
    _orjson_loads = orjson.loads


def _orjson_dumps(obj: Any, /) -> bytes:
    _load_orjson()
    return _orjson_dumps(obj)


def _orjson_loads(data: bytes, /) -> Any:
    _load_orjson()
    return _orjson_loads(data)


_TAG = "__kvkit__"
_TAG_MARKER = b'"__kvkit__"'
_TOO_DEEP = "value is nested too deeply or contains a reference cycle"
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_UUID = uuid.UUID
#: Types a plain value may have without any check (ints: orjson rejects big ones itself).
_SCALARS = frozenset({str, int, bool, type(None)})

_SUPPORTED = (
    "None, bool, int, float, str, list, dict (str keys), tuple, set, frozenset, bytes, "
    "datetime, date, time, UUID, Decimal, Enum, dataclass, attrs, pydantic model"
)
#: Tags whose decoded value is hashable, so they may appear inside a set.
_HASHABLE_TAGS = frozenset(
    {"datetime", "date", "time", "uuid", "decimal", "bytes", "int", "tuple", "frozenset"}
)
#: Exact item types whose instances usually order among themselves (for set sorting;
#: a comparison that fails just leaves the set in iteration order).
_ORDERABLE = frozenset({str, int, float, bytes, tuple, date, datetime, time, _UUID})


class Serializer(Protocol):
    """What a custom serializer passed to kvkit must provide."""

    def dumps(self, value: Any) -> bytes | str:
        """Encode ``value``; a ``str`` result is stored as UTF-8."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes produced by :meth:`dumps`."""
        ...


class _EncodeFail(Exception):
    """Internal: why a value cannot be encoded (the key is added by :class:`Codec`)."""


class _DecodeFail(Exception):
    """Internal: why bytes cannot be decoded (the key is added by :class:`Codec`)."""


def _reject_constant(name: str) -> NoReturn:
    raise _DecodeFail(f"not valid JSON ({name} is not a JSON value)")


_json_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
).encode
_json_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


# -- encoding ----------------------------------------------------------------------------


def _type_name(obj: object) -> str:
    cls = type(obj)
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", cls.__name__)
    if module in (None, "builtins"):
        return f"{name}"
    return f"{module}.{name}"


def _unsupported(obj: object) -> _EncodeFail:
    return _EncodeFail(f"type {_type_name(obj)!r} is not supported (supported: {_SUPPORTED})")


def _non_finite() -> _EncodeFail:
    return _EncodeFail("float NaN and infinities are not valid JSON and are not supported")


def _plain_dict(d: dict[Any, Any]) -> bool:
    """Whether orjson may write ``d`` as it is (the fast path; no copy, no tags).

    True when every value is a plain scalar, a finite float or a plain dict/list, and no
    dict has a ``"__kvkit__"`` key. Keys are not checked here: orjson itself rejects
    keys that are not exact ``str`` (and ints beyond 64 bits), and the slow path then
    gives the proper error.
    """
    if _TAG in d:
        return False
    for v in d.values():
        t = type(v)
        if t in _SCALARS:
            continue
        if t is float:
            if v - v == 0.0:  # finite (inf - inf and NaN - NaN are NaN)
                continue
        elif t is dict:
            if _plain_dict(v):
                continue
        elif t is list and _plain_list(v):
            continue
        return False
    return True


def _plain_list(lst: list[Any]) -> bool:
    """Like :func:`_plain_dict`, for a list."""
    for v in lst:
        t = type(v)
        if t in _SCALARS:
            continue
        if t is float:
            if v - v == 0.0:
                continue
        elif t is dict:
            if _plain_dict(v):
                continue
        elif t is list and _plain_list(v):
            continue
        return False
    return True


def _prep(obj: Any) -> Any:
    """Turn a value into JSON-native data, tagging the special types (the slow path).

    Validates everything orjson/json would reject or silently change (tuples, sets, NaN,
    non-str keys, UUIDs and datetimes that orjson would write as plain strings, ints
    beyond 64 bits, ...). Containers that need no change are returned as they are.
    """
    t = type(obj)
    if t is str or obj is None or t is bool:
        return obj
    if t is int:
        return obj if _INT_MIN <= obj <= _INT_MAX else _enc_big_int(obj)
    if t is dict:
        return _prep_dict(obj)
    if t is list:
        return _prep_list(obj)
    if t is float:
        if obj - obj == 0.0:
            return obj
        raise _non_finite()
    encoder = _EXACT_ENCODERS.get(t)
    if encoder is not None:
        return encoder(obj)
    return _prep_other(obj)


def _prep_dict(d: dict[Any, Any]) -> Any:
    out: dict[str, Any] | None = None
    for k, v in d.items():
        if type(k) is not str:
            return _prep_dict_keys(d)
        t = type(v)
        if t is str or v is None or t is bool:
            continue
        if t is int:
            if _INT_MIN <= v <= _INT_MAX:
                continue
        elif t is float:
            if v - v == 0.0:
                continue
            raise _non_finite()
        nv = _prep(v)
        if nv is not v:
            if out is None:
                out = d.copy()
            out[k] = nv
    if _TAG in d:
        return {_TAG: "dict", "v": d if out is None else out}
    return d if out is None else out


def _prep_dict_keys(d: dict[Any, Any]) -> Any:
    """Rebuild a dict whose keys are not all exact ``str`` (str subclasses, enums)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if type(k) is str:
            key = k
        elif isinstance(k, Enum) and isinstance(k.value, str):
            key = str.__str__(k.value)
        elif isinstance(k, str) and not isinstance(k, Enum):
            key = str.__str__(k)
        else:
            raise _EncodeFail(
                f"dict key of type {_type_name(k)!r} is not supported "
                "(JSON object keys must be str)"
            )
        if key in out:
            raise _EncodeFail("two dict keys convert to the same str key")
        out[key] = _prep(v)
    if _TAG in out:
        return {_TAG: "dict", "v": out}
    return out


def _prep_list(lst: list[Any]) -> list[Any]:
    out: list[Any] | None = None
    for i, v in enumerate(lst):
        t = type(v)
        if t is str or v is None or t is bool:
            continue
        if t is int:
            if _INT_MIN <= v <= _INT_MAX:
                continue
        elif t is float:
            if v - v == 0.0:
                continue
            raise _non_finite()
        nv = _prep(v)
        if nv is not v:
            if out is None:
                out = lst.copy()
            out[i] = nv
    return lst if out is None else out


def _prep_items(items: Iterable[Any]) -> list[Any]:
    """Encode items into a new list (for tuples and sets)."""
    out = list(items)
    for i, v in enumerate(out):
        t = type(v)
        if t is str or v is None or t is bool:
            continue
        nv = _prep(v)
        if nv is not v:
            out[i] = nv
    return out


def _zone_key(tz: tzinfo | None) -> str | None:
    """The IANA key of a ``ZoneInfo`` tzinfo, else ``None`` (zoneinfo is not imported)."""
    if tz is None:
        return None
    zoneinfo = sys.modules.get("zoneinfo")
    if zoneinfo is not None and isinstance(tz, zoneinfo.ZoneInfo):
        key = tz.key
        return key if isinstance(key, str) else None
    return None


def _enc_datetime(obj: datetime) -> dict[str, Any]:
    out = {_TAG: "datetime", "v": datetime.isoformat(obj)}
    zone = _zone_key(obj.tzinfo)
    if zone is not None:
        out["tz"] = zone
    return out


def _enc_time(obj: time) -> dict[str, Any]:
    out = {_TAG: "time", "v": time.isoformat(obj)}
    zone = _zone_key(obj.tzinfo)
    if zone is not None:
        out["tz"] = zone
    return out


def _enc_date(obj: date) -> dict[str, Any]:
    return {_TAG: "date", "v": date.isoformat(obj)}


def _enc_uuid(obj: uuid.UUID) -> dict[str, Any]:
    return {_TAG: "uuid", "v": _UUID.__str__(obj)}


def _enc_bytes(obj: bytes) -> dict[str, Any]:
    return {_TAG: "bytes", "v": binascii.b2a_base64(obj, newline=False).decode("ascii")}


def _enc_big_int(obj: int) -> dict[str, Any]:
    try:
        text = int.__repr__(obj)
    except ValueError:  # beyond sys.get_int_max_str_digits()
        raise _EncodeFail("int has more digits than sys.get_int_max_str_digits() allows") from None
    return {_TAG: "int", "v": text}


def _enc_tuple(obj: tuple[Any, ...]) -> dict[str, Any]:
    return {_TAG: "tuple", "v": _prep_items(obj)}


def _decodes_hashable(item: Any) -> bool:
    """Whether an encoded item decodes to a hashable value (so it may sit in a set)."""
    if type(item) is list:
        return False
    if type(item) is not dict:
        return True
    tag = item.get(_TAG)
    if tag not in _HASHABLE_TAGS:
        return False
    if tag == "tuple" or tag == "frozenset":
        return all(_decodes_hashable(x) for x in item["v"])
    return True


def _enc_set(obj: set[Any] | frozenset[Any]) -> dict[str, Any]:
    items = list(obj)
    encoded = _prep_items(items)  # validates the item types before any comparison
    if not all(_decodes_hashable(x) for x in encoded):
        raise _EncodeFail(
            "a set item would not decode as a hashable value (a dataclass or model "
            "instance, an Enum with a list value, or a tuple holding one)"
        )
    if len(items) > 1:
        first = type(items[0])
        if first in _ORDERABLE and all(type(x) is first for x in items):
            try:
                order = sorted(range(len(items)), key=items.__getitem__)
            except (TypeError, ArithmeticError):  # naive vs aware datetimes, ...
                pass
            else:
                encoded = [encoded[i] for i in order]
    return {_TAG: "frozenset" if isinstance(obj, frozenset) else "set", "v": encoded}


def _model_dict(obj: object) -> Any:
    """The dict form of a dataclass/attrs/pydantic instance, or ``_MISSING``."""
    cls = type(obj)
    if hasattr(cls, "__dataclass_fields__"):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    attrs_fields = getattr(cls, "__attrs_attrs__", None)
    if isinstance(attrs_fields, tuple):
        return {a.name: getattr(obj, a.name) for a in attrs_fields}
    for base in cls.__mro__:
        if base.__name__ == "BaseModel" and base.__module__.startswith("pydantic"):
            if hasattr(obj, "model_dump"):  # pydantic v2
                return obj.model_dump(mode="python")
            return obj.dict()  # type: ignore[attr-defined]  # pydantic v1
    return _MISSING


_MISSING: Any = object()


def _prep_other(obj: Any) -> Any:
    """Everything that is not an exact plain/special type: subclasses and models."""
    if isinstance(obj, Enum):
        return _prep(obj.value)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, int):
        return _prep(int.__int__(obj))
    if isinstance(obj, float):
        return _prep(float.__float__(obj))
    if isinstance(obj, dict):
        return _prep_dict(dict(obj))
    if isinstance(obj, list):
        return _prep_list(list(obj))
    if isinstance(obj, tuple):
        return _enc_tuple(obj)
    if isinstance(obj, (set, frozenset)):
        return _enc_set(obj)
    if isinstance(obj, datetime):
        return _enc_datetime(obj)
    if isinstance(obj, date):
        return _enc_date(obj)
    if isinstance(obj, time):
        return _enc_time(obj)
    if isinstance(obj, _UUID):
        return _enc_uuid(obj)
    if isinstance(obj, bytes):
        return _enc_bytes(bytes(obj))
    decimal = sys.modules.get("decimal")  # a Decimal implies decimal is imported
    if decimal is not None and isinstance(obj, decimal.Decimal):
        return {_TAG: "decimal", "v": decimal.Decimal.__str__(obj)}
    if isinstance(obj, type):
        raise _unsupported(obj)
    try:
        as_dict = _model_dict(obj)
    except Exception as exc:
        raise _EncodeFail(
            f"converting the {_type_name(obj)!r} instance to a dict failed ({type(exc).__name__})"
        ) from exc
    if as_dict is _MISSING:
        raise _unsupported(obj)
    return _prep(as_dict)


_EXACT_ENCODERS: dict[type, Callable[[Any], Any]] = {
    tuple: _enc_tuple,
    set: _enc_set,
    frozenset: _enc_set,
    datetime: _enc_datetime,
    date: _enc_date,
    time: _enc_time,
    _UUID: _enc_uuid,
    bytes: _enc_bytes,
}


def _dump_stdlib(obj: Any) -> bytes:
    """Serialize already prepared data with the stdlib encoder."""
    try:
        return _json_encode(obj).encode("utf-8")
    except UnicodeEncodeError:
        raise _EncodeFail("str contains lone surrogates, which are not valid UTF-8") from None


def _encode_slow(key: str, value: Any, use_orjson: bool) -> bytes:
    """Prepare ``value`` with :func:`_prep` and serialize it; errors name ``key``."""
    try:
        obj = _prep(value)
        if use_orjson:
            try:
                return _orjson_dumps(obj)
            except TypeError:  # nested deeper than orjson's 254 levels, lone surrogates
                pass
        return _dump_stdlib(obj)
    except _EncodeFail as exc:
        raise SerializationError(
            f"cannot serialize value for key {key!r}: {exc}"
        ) from exc.__cause__
    except RecursionError:
        raise SerializationError(f"cannot serialize value for key {key!r}: {_TOO_DEEP}") from None
    except Exception as exc:  # e.g. a tzinfo whose utcoffset() raises
        raise SerializationError(
            f"cannot serialize value for key {key!r}: encoding a {_type_name(value)!r} "
            f"failed ({type(exc).__name__})"
        ) from exc


# -- decoding ----------------------------------------------------------------------------


def _loads_stdlib(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _DecodeFail(f"not valid UTF-8 (at byte {exc.start})") from exc
    try:
        return _json_decode(text)
    except json.JSONDecodeError as exc:
        raise _DecodeFail(
            f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    except RecursionError:
        raise _DecodeFail("not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # an int with more digits than Python converts
        raise _DecodeFail(f"not valid JSON ({type(exc).__name__})") from exc


def _raise_decode_error(key: str, exc: Exception) -> NoReturn:
    """Raise the :class:`DecodeError` for ``exc``; called in ``except`` blocks."""
    if isinstance(exc, _DecodeFail):
        raise DecodeError(f"cannot decode value for key {key!r}: {exc}") from exc.__cause__
    if isinstance(exc, RecursionError):
        raise DecodeError(f"cannot decode value for key {key!r}: nested too deeply") from None
    # Defensive: whatever happens, the contract is DecodeError and nothing else.
    raise DecodeError(f"cannot decode value for key {key!r}: {type(exc).__name__}") from exc


def _coerce(key: str, data: Any) -> bytes:
    """Bytes from a ``bytearray``/``memoryview``/``str`` (e.g. ``decode_responses``)."""
    if isinstance(data, (bytearray, memoryview, bytes)):
        return bytes(data)
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError:
            raise DecodeError(f"cannot decode value for key {key!r}: not valid UTF-8") from None
    raise DecodeError(
        f"cannot decode value for key {key!r}: expected bytes, got {_type_name(data)!r}"
    )


# -- decoding tagged values ---------------------------------------------------------------


def _restore(obj: Any) -> Any:
    """Rebuild tagged values inside freshly decoded JSON (mutates it in place)."""
    t = type(obj)
    if t is dict:
        if _TAG in obj:
            return _untag(obj)
        for k, v in obj.items():
            tv = type(v)
            if tv is dict or tv is list:
                nv = _restore(v)
                if nv is not v:
                    obj[k] = nv
    elif t is list:
        for i, v in enumerate(obj):
            tv = type(v)
            if tv is dict or tv is list:
                nv = _restore(v)
                if nv is not v:
                    obj[i] = nv
    return obj


def _malformed(tag: str, why: str = "") -> _DecodeFail:
    return _DecodeFail(f"malformed {tag!r} tagged value{': ' if why else ''}{why}")


def _need(tag: str, v: Any, kind: type) -> None:
    if type(v) is not kind:
        raise _malformed(tag, f"'v' must be a JSON {'string' if kind is str else kind.__name__}")


def _dec_dict(v: Any, _: dict[str, Any]) -> Any:
    _need("dict", v, dict)
    for k, item in v.items():
        ti = type(item)
        if ti is dict or ti is list:
            new = _restore(item)
            if new is not item:
                v[k] = new
    return v


def _dec_tuple(v: Any, _: dict[str, Any]) -> Any:
    _need("tuple", v, list)
    return tuple(_restore(v))


def _dec_set(v: Any, _: dict[str, Any]) -> Any:
    _need("set", v, list)
    try:
        return set(_restore(v))
    except TypeError:
        raise _malformed("set", "an item is not hashable") from None


def _dec_frozenset(v: Any, _: dict[str, Any]) -> Any:
    _need("frozenset", v, list)
    try:
        return frozenset(_restore(v))
    except TypeError:
        raise _malformed("frozenset", "an item is not hashable") from None


def _load_zone(name: Any, tag: str) -> ZoneInfo | None:
    if type(name) is not str:
        raise _malformed(tag, "'tz' must be a JSON string")
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except Exception:  # unknown here (no tzdata?), or a key zoneinfo refuses
        return None


def _dec_datetime(v: Any, whole: dict[str, Any]) -> Any:
    _need("datetime", v, str)
    try:
        value = datetime.fromisoformat(v)
    except ValueError:
        raise _malformed("datetime", "not an ISO 8601 datetime") from None
    if "tz" not in whole:
        return value
    zone = _load_zone(whole["tz"], "datetime")
    offset = value.utcoffset()
    if offset is None:
        raise _malformed("datetime", "'tz' given for a naive datetime")
    if zone is None:
        return value
    local = value.replace(tzinfo=zone)
    if local.utcoffset() != offset:
        local = local.replace(fold=1 - local.fold)
        if local.utcoffset() != offset:  # the zone's rules changed since it was written
            local = value.astimezone(zone)
    return local


def _dec_time(v: Any, whole: dict[str, Any]) -> Any:
    _need("time", v, str)
    try:
        value = time.fromisoformat(v)
    except ValueError:
        raise _malformed("time", "not an ISO 8601 time") from None
    if "tz" not in whole:
        return value
    zone = _load_zone(whole["tz"], "time")
    if value.tzinfo is not None:
        raise _malformed("time", "both an offset and 'tz' given")
    if zone is None:  # a time carries no offset to fall back to
        raise _malformed("time", "unknown time zone")
    return value.replace(tzinfo=zone)


def _dec_date(v: Any, _: dict[str, Any]) -> Any:
    _need("date", v, str)
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise _malformed("date", "not an ISO 8601 date") from None


def _dec_uuid(v: Any, _: dict[str, Any]) -> Any:
    _need("uuid", v, str)
    try:
        return _UUID(v)
    except ValueError:
        raise _malformed("uuid", "not a UUID") from None


_DEC_CONTEXT: Any = None


def _dec_decimal(v: Any, _: dict[str, Any]) -> Any:
    global _DEC_CONTEXT
    _need("decimal", v, str)
    import decimal

    if _DEC_CONTEXT is None:  # exact conversion that always traps bad syntax
        _DEC_CONTEXT = decimal.Context(
            prec=decimal.MAX_PREC,
            Emax=decimal.MAX_EMAX,
            Emin=decimal.MIN_EMIN,
            traps=[decimal.InvalidOperation, decimal.Overflow],
        )
    try:
        return _DEC_CONTEXT.create_decimal(v)
    except (ArithmeticError, ValueError, MemoryError):
        raise _malformed("decimal", "not a decimal number") from None


def _dec_bytes(v: Any, _: dict[str, Any]) -> Any:
    _need("bytes", v, str)
    try:
        if sys.version_info >= (3, 11):
            return binascii.a2b_base64(v.encode("ascii"), strict_mode=True)
        import base64  # pragma: no cover - Python 3.10

        return base64.b64decode(v.encode("ascii"), validate=True)  # pragma: no cover
    except (ValueError, UnicodeEncodeError):  # binascii.Error is a ValueError
        raise _malformed("bytes", "not base64") from None


def _dec_int(v: Any, _: dict[str, Any]) -> Any:
    _need("int", v, str)
    if not v or not (v[1:] if v[0] == "-" else v).isdecimal() or not v.isascii():
        raise _malformed("int", "not a decimal integer")
    try:
        return int(v)
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        raise _malformed("int", "too many digits") from None


_UNTAGGERS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "dict": _dec_dict,
    "tuple": _dec_tuple,
    "set": _dec_set,
    "frozenset": _dec_frozenset,
    "datetime": _dec_datetime,
    "date": _dec_date,
    "time": _dec_time,
    "uuid": _dec_uuid,
    "decimal": _dec_decimal,
    "bytes": _dec_bytes,
    "int": _dec_int,
}


def _untag(d: dict[str, Any]) -> Any:
    tag = d[_TAG]
    if type(tag) is not str:
        raise _DecodeFail("malformed tagged value: the tag is not a JSON string")
    decoder = _UNTAGGERS.get(tag)
    if decoder is None:
        raise _DecodeFail(f"unknown tag {tag[:40]!r}")
    if "v" not in d:
        raise _malformed(tag, "no 'v' member")
    if len(d) != 2 and not (len(d) == 3 and "tz" in d and (tag == "datetime" or tag == "time")):
        raise _malformed(tag, "unexpected members")
    return decoder(d["v"], d)


# -- the codec ---------------------------------------------------------------------------


class Codec:
    """Encodes values to bytes and back, raising kvkit's typed errors naming the key.

    The built-in codec stores JSON as described in this module's docstring, using orjson
    when it is installed and the stdlib ``json`` module otherwise (same bytes). A custom
    :class:`Serializer` replaces it entirely; its exceptions are wrapped.

    ``Codec(...)`` returns an instance of a private subclass specialised for the chosen
    path (fewer checks per call on the hot path); it is still a :class:`Codec`.

    Args:
        serializer: a custom serializer, or ``None`` for the built-in JSON codec.
        _force_stdlib: private, for tests and benchmarks: use the stdlib ``json`` path
            even when orjson is installed.

    Attributes:
        name: ``"orjson"`` or ``"json"`` for the built-in codec, ``"custom"`` otherwise.

    Raises:
        ConfigError: ``serializer`` lacks callable ``dumps``/``loads`` methods.
    """

    __slots__ = ("name",)

    name: str

    def __new__(cls, serializer: Serializer | None = None, *, _force_stdlib: bool = False) -> Codec:
        target: type[Codec] = cls
        if cls is Codec:
            if serializer is not None:
                target = _CustomCodec
            elif HAVE_ORJSON and not _force_stdlib:
                target = _OrjsonCodec
        return object.__new__(target)

    def __init__(self, serializer: Serializer | None = None, *, _force_stdlib: bool = False):
        self.name = "json"

    def __repr__(self) -> str:
        return f"Codec(name={self.name!r})"

    def encode(self, key: str, value: Any) -> bytes:
        """Encode ``value`` (stored under ``key``) to bytes.

        Args:
            key: the key the value is stored under; used in error messages only.
            value: the value to encode.

        Returns:
            The bytes to store.

        Raises:
            SerializationError: the value (or something nested in it) is not supported;
                the message names the key and the offending type, never the value.
        """
        return _encode_slow(key, value, use_orjson=False)

    def decode(self, key: str, data: bytes) -> Any:
        """Decode bytes read from ``key`` back to a value.

        Args:
            key: the key the bytes were read from; used in error messages only.
            data: the stored bytes (``bytearray``/``memoryview``/``str`` are accepted).

        Returns:
            The decoded value.

        Raises:
            DecodeError: the bytes are not UTF-8 JSON, or hold a malformed tagged value;
                the message names the key. No other exception escapes.
        """
        if type(data) is not bytes:
            data = _coerce(key, data)
        try:
            value = _loads_stdlib(data)
            if data.find(_TAG_MARKER) != -1:
                value = _restore(value)
        except Exception as exc:
            _raise_decode_error(key, exc)
        return value

    def decode_many(self, keys: list[str], raws: list[bytes | None]) -> dict[str, Any]:
        """Decode a batch read in one round trip, skipping missing values (``None``).

        Args:
            keys: the keys, in the order of ``raws``; used in error messages only.
            raws: the stored bytes, ``None`` where a key was missing.

        Returns:
            ``{key: value}`` for the keys that had a value.

        Raises:
            DecodeError: one of the values cannot be decoded; the message names its key.
        """
        decode = self.decode
        return {k: decode(k, r) for k, r in zip(keys, raws, strict=True) if r is not None}


class _OrjsonCodec(Codec):
    """The built-in codec on orjson."""

    __slots__ = ()

    def __init__(self, serializer: Serializer | None = None, *, _force_stdlib: bool = False):
        self.name = "orjson"

    def encode(self, key: str, value: Any) -> bytes:
        t = type(value)
        try:
            if t is dict:
                plain = _plain_dict(value)
            elif t is list:
                plain = _plain_list(value)
            else:
                plain = t in _SCALARS or (t is float and value - value == 0.0)
            if plain:
                return _orjson_dumps(value)
        except (TypeError, RecursionError):
            pass  # ints beyond 64 bits, non-str keys, lone surrogates, deep nesting, cycles
        return _encode_slow(key, value, use_orjson=True)

    def decode(self, key: str, data: bytes) -> Any:
        if type(data) is not bytes:
            data = _coerce(key, data)
        try:
            value = _orjson_loads(data)
        except ValueError:
            # Invalid, or deeper than orjson's 1024 levels: the stdlib decoder reads the
            # latter and words the error the same way on both paths.
            return Codec.decode(self, key, data)
        if data.find(_TAG_MARKER) == -1:
            return value
        try:
            return _restore(value)
        except Exception as exc:
            _raise_decode_error(key, exc)

    def decode_many(self, keys: list[str], raws: list[bytes | None]) -> dict[str, Any]:
        # Batch fast path: plain orjson in one comprehension and ONE marker search over
        # the joined bytes. Anything unusual (a tag, invalid bytes, non-bytes input) takes
        # the exact per-item path, which also names the offending key in errors.
        present = [r for r in raws if r is not None]
        if all(type(r) is bytes for r in present) and _TAG_MARKER not in b"".join(present):
            try:
                loads = _orjson_loads
                return {k: loads(r) for k, r in zip(keys, raws, strict=True) if r is not None}
            except ValueError:
                pass
        return Codec.decode_many(self, keys, raws)


class _CustomCodec(Codec):
    """A codec over a user-supplied :class:`Serializer`."""

    __slots__ = ("_serializer",)

    def __init__(self, serializer: Serializer | None = None, *, _force_stdlib: bool = False):
        if not (
            callable(getattr(serializer, "dumps", None))
            and callable(getattr(serializer, "loads", None))
        ):
            raise ConfigError("a custom serializer must have callable dumps() and loads() methods")
        assert serializer is not None
        self._serializer: Serializer = serializer
        self.name = "custom"

    def encode(self, key: str, value: Any) -> bytes:
        try:
            out = self._serializer.dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"cannot serialize value for key {key!r}: the custom serializer failed on "
                f"type {_type_name(value)!r} ({type(exc).__name__})"
            ) from exc
        if type(out) is bytes:
            return out
        if isinstance(out, str):
            try:
                return out.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise SerializationError(
                    f"cannot serialize value for key {key!r}: the custom serializer "
                    "returned a str that is not valid UTF-8"
                ) from exc
        if isinstance(out, (bytes, bytearray, memoryview)):
            return bytes(out)
        raise SerializationError(
            f"cannot serialize value for key {key!r}: the custom serializer returned "
            f"{_type_name(out)!r}, expected bytes or str"
        )

    def decode(self, key: str, data: bytes) -> Any:
        try:
            return self._serializer.loads(data)
        except Exception as exc:
            raise DecodeError(
                f"cannot decode value for key {key!r}: the custom serializer failed "
                f"({type(exc).__name__})"
            ) from exc


_DEFAULT_CODEC = Codec()


def default_codec() -> Codec:
    """Return the shared instance of the built-in JSON codec.

    Returns:
        The module-level :class:`Codec` (orjson when installed, else stdlib ``json``).
    """
    return _DEFAULT_CODEC
