"""Tests of the value codec (kvkit/_serde.py)."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import importlib.util
import json
import math
import os
import pathlib
import pickle
import random
import shlex
import socket
import sys
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from types import ModuleType
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import attrs
import pydantic
import pytest

from kvkit import _serde
from kvkit._errors import ConfigError, DecodeError, KVKitError, SerializationError
from kvkit._serde import HAVE_ORJSON, Codec, default_codec

# ----------------------------------------------------------------------------- helpers

CODEC_KINDS = [
    pytest.param("orjson", marks=pytest.mark.skipif(not HAVE_ORJSON, reason="needs orjson")),
    "json",
]


def make_codec(kind: str) -> Codec:
    return Codec(_force_stdlib=kind == "json")


@pytest.fixture(params=CODEC_KINDS)
def codec(request: pytest.FixtureRequest) -> Codec:
    """Both built-in paths: orjson (when installed) and the stdlib json fallback."""
    return make_codec(request.param)


def assert_same(a: Any, b: Any) -> None:
    """Assert ``b`` equals ``a`` with the same types all the way down."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, float):
        assert a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert type(k) is type(next(x for x in b if x == k))
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, (set, frozenset)):
        assert a == b
        by_value = {y: y for y in b}
        for x in a:
            assert_same(x, by_value[x])
    elif isinstance(a, (datetime, time)):
        assert a == b
        assert a.tzinfo == b.tzinfo
        assert a.utcoffset() == b.utcoffset()
        assert a.fold == b.fold
        assert a.isoformat() == b.isoformat()
    elif isinstance(a, Decimal):
        assert str(a) == str(b)
    else:
        assert a == b


def roundtrip(codec: Codec, value: Any, key: str = "k") -> Any:
    return codec.decode(key, codec.encode(key, value))


# ----------------------------------------------------------------------------- values

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
U1 = uuid.UUID("12345678-1234-5678-1234-567812345678")
U2 = uuid.UUID(int=0)


class Color(enum.Enum):
    RED = "red"
    GREEN = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(str, enum.Enum):
    FAST = "fast"


class Flags(enum.IntFlag):
    A = 1
    B = 2


class MyStr(str):
    pass


class MyInt(int):
    pass


class MyFloat(float):
    pass


class MyList(list):  # type: ignore[type-arg]
    pass


class MySet(set):  # type: ignore[type-arg]
    pass


class MyFrozenset(frozenset):  # type: ignore[type-arg]
    pass


class MyDatetime(datetime):
    pass


class MyDate(date):
    pass


class MyTime(time):
    pass


class MyUUID(uuid.UUID):
    pass


class MyBytes(bytes):
    pass


class MyDecimal(Decimal):
    pass


class Point(NamedTuple):
    x: int
    y: int


PLAIN_VALUES = {
    "none": None,
    "true": True,
    "false": False,
    "zero": 0,
    "neg int": -17,
    "int64 max": 2**63 - 1,
    "int64 min": -(2**63),
    "uint64 max": 2**64 - 1,
    "float": 1.5,
    "neg zero": -0.0,
    "tiny float": 5e-324,
    "huge float": 1.7976931348623157e308,
    "third": 1 / 3,
    "empty str": "",
    "str": "hello",
    "unicode": "h\u00e9llo \u4e16\u754c \U0001f600",
    "controls": 'a\x00b\x1fc\x7f\u2028\u2029"\\/',
    "tag-like str": "__kvkit__",
    "quoted tag str": '"__kvkit__"',
    "empty list": [],
    "empty dict": {},
    "list": [1, "a", None, True, 2.5],
    "dict": {"a": [1, 2]},
    "nested": {"a": {"b": {"c": [[], {}, [{"d": None}]]}}},
    "bools stay bools": [True, 1, False, 0, {"t": True, "o": 1}],
    "dict order": {"z": 1, "a": 2, "m": 3},
    "unicode keys": {"cl\u00e9": "v", "\U0001f511": 1},
}

SPECIAL_VALUES = {
    "naive datetime": datetime(2024, 5, 1, 12, 30, 45),
    "datetime micro": datetime(2024, 5, 1, 12, 30, 45, 123456),
    "datetime 1 micro": datetime(1, 1, 1, 0, 0, 0, 1),
    "datetime max": datetime.max,
    "datetime utc": datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc),
    "datetime +05:30": datetime(2024, 5, 1, 12, 30, 0, 7, tzinfo=timezone(timedelta(hours=5.5))),
    "datetime -03:00": datetime(2024, 5, 1, tzinfo=timezone(timedelta(hours=-3))),
    "datetime named fixed": datetime(2024, 5, 1, tzinfo=timezone(timedelta(hours=1), "CET")),
    "datetime zoneinfo": datetime(2024, 7, 1, 8, 0, tzinfo=PARIS),
    "datetime zoneinfo winter": datetime(2024, 1, 1, 8, 0, 0, 5, tzinfo=PARIS),
    "datetime fold 0": datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK, fold=0),
    "datetime fold 1": datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK, fold=1),
    "datetime LMT offset with seconds": datetime(1900, 1, 1, 12, 0, tzinfo=PARIS),
    "date": date(2024, 2, 29),
    "date min": date.min,
    "time": time(23, 59, 59),
    "time micro": time(0, 0, 0, 999999),
    "time aware": time(12, 0, tzinfo=timezone(timedelta(hours=2))),
    "time zoneinfo": time(12, 0, tzinfo=PARIS),
    "uuid": U1,
    "uuid zero": U2,
    "uuid4": uuid.UUID("9c1d1ad9-4a3c-4b8e-9f5e-3f4d2b1a0c9e"),
    "decimal": Decimal("1.10"),
    "decimal neg zero": Decimal("-0"),
    "decimal exp": Decimal("1E+3"),
    "decimal long": Decimal("3.14159265358979323846264338327950288419716939937510582097494"),
    "decimal inf": Decimal("-Infinity"),
    "decimal tiny": Decimal("1E-999999"),
    "bytes": b"\x00\x01\xfe\xff",
    "empty bytes": b"",
    "bytes ascii": b"hello",
    "bytes long": bytes(range(256)) * 3,
    "tuple": (1, "a", None),
    "empty tuple": (),
    "nested tuple": ((1, 2), (3, (4, ()))),
    "set": {1, 2, 3},
    "str set": {"b", "a", "c"},
    "empty set": set(),
    "mixed set": {1, "a", None, 2.5, (1, 2)},
    "int and float set": {1, 2.5, 3.0},
    "frozenset": frozenset({"x", "y"}),
    "empty frozenset": frozenset(),
    "frozenset of frozensets": frozenset({frozenset({1}), frozenset({"a", U1})}),
    "set of uuids": {U1, U2},
    "set of tuples": {(1, 2), ("a", (b"x",))},
    "set of datetimes": {datetime(2024, 1, 1), datetime(2023, 1, 1)},
    "set of decimals": {Decimal("1.5"), Decimal("2")},
    "set of bytes": {b"a", b""},
    "big int": 2**64,
    "big negative int": -(2**63) - 1,
    "huge int": 10**200,
    "big ints in list": [2**64, -(2**63) - 1, 2**64 - 1, -(2**63)],
    "big int in set": {2**70, 1},
    "big int dict key-value": {"n": 2**100},
    "tuple of sets of uuids in a dict in a list": [{"t": ({U1, U2}, frozenset({U1}))}],
    "everything nested": {
        "when": datetime(2024, 5, 1, tzinfo=timezone.utc),
        "days": [date(2024, 1, 1), (time(1, 2), Decimal("0.1"))],
        "ids": {U1},
        "blob": [b"\x00", {"x": (b"",)}],
        "n": 2**80,
    },
    "user dict with tag key": {"__kvkit__": "uuid", "v": str(U1)},
    "user dict with tag key only": {"__kvkit__": 1},
    "user dict mimicking dict escape": {"__kvkit__": "dict", "v": {"__kvkit__": "x"}},
    "nested user tag dicts": {"__kvkit__": {"__kvkit__": ({"__kvkit__": None},)}},
    "tag key in list": [{"__kvkit__": "tuple", "v": [1]}],
    "tag key with special value": {"__kvkit__": U1, "other": {1, 2}},
}


# ----------------------------------------------------------------------------- API


def test_codec_names_and_default() -> None:
    """The built-in codec is named after its encoder; default_codec() is shared."""
    assert make_codec("json").name == "json"
    assert Codec().name == ("orjson" if HAVE_ORJSON else "json")
    assert default_codec() is default_codec()
    assert isinstance(default_codec(), Codec)
    assert default_codec().name == Codec().name
    assert repr(make_codec("json")) == "Codec(name='json')"


def test_all_codecs_are_codecs() -> None:
    """Whatever path is chosen, the object is a Codec with encode/decode."""

    class Ser:
        def dumps(self, value: Any) -> bytes:
            return b""

        def loads(self, data: bytes) -> Any:
            return None

    for c in (Codec(), make_codec("json"), Codec(Ser())):
        assert isinstance(c, Codec)
        assert callable(c.encode) and callable(c.decode)


def test_have_orjson_matches_import() -> None:
    """HAVE_ORJSON tells whether orjson is importable."""
    assert HAVE_ORJSON is (importlib.util.find_spec("orjson") is not None)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("value", list(PLAIN_VALUES.values()), ids=list(PLAIN_VALUES))
def test_plain_values_round_trip(codec: Codec, value: Any) -> None:
    """Plain JSON values come back equal and with the same types."""
    assert_same(value, roundtrip(codec, value))


@pytest.mark.parametrize("value", list(SPECIAL_VALUES.values()), ids=list(SPECIAL_VALUES))
def test_special_values_round_trip(codec: Codec, value: Any) -> None:
    """Tagged types come back as the same Python type, nested anywhere."""
    assert_same(value, roundtrip(codec, value))


@pytest.mark.parametrize("value", list(SPECIAL_VALUES.values()), ids=list(SPECIAL_VALUES))
def test_special_values_round_trip_nested(codec: Codec, value: Any) -> None:
    """Special values keep their type inside lists, dicts and tuples."""
    wrapped = [{"a": value, "b": (value, [value])}, value]
    assert_same(wrapped, roundtrip(codec, wrapped))


def test_decimal_nan_round_trips(codec: Codec) -> None:
    """Decimal NaN (which never equals itself) comes back as a Decimal NaN."""
    for text in ("NaN", "-NaN", "sNaN", "NaN123"):
        out = roundtrip(codec, Decimal(text))
        assert type(out) is Decimal and out.is_nan() and str(out) == str(Decimal(text))


def test_zoneinfo_is_restored(codec: Codec) -> None:
    """A ZoneInfo datetime comes back with the same ZoneInfo, wall time and fold."""
    value = datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK, fold=1)
    out = roundtrip(codec, value)
    assert out.tzinfo is NEW_YORK
    assert (out.replace(tzinfo=None), out.fold, out.utcoffset()) == (
        value.replace(tzinfo=None),
        1,
        timedelta(hours=-5),
    )


def test_datetime_gap_time_round_trips(codec: Codec) -> None:
    """A wall time in a DST gap keeps its wall time and fold."""
    for fold in (0, 1):
        value = datetime(2024, 3, 10, 2, 30, tzinfo=NEW_YORK, fold=fold)
        assert_same(value, roundtrip(codec, value))


def test_unknown_zone_falls_back_to_fixed_offset(codec: Codec) -> None:
    """A datetime whose zone is unknown where it is read keeps its instant and offset."""
    data = b'{"__kvkit__":"datetime","v":"2024-05-01T12:00:00+02:00","tz":"No/Such_Zone"}'
    out = codec.decode("k", data)
    assert out == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    assert out.utcoffset() == timedelta(hours=2)


def test_changed_zone_rules_keep_the_instant(codec: Codec) -> None:
    """An offset the zone no longer has at that wall time still gives the same instant."""
    data = b'{"__kvkit__":"datetime","v":"2024-07-01T12:00:00+05:00","tz":"Europe/Paris"}'
    out = codec.decode("k", data)
    assert out.tzinfo is PARIS
    assert out == datetime(2024, 7, 1, 7, tzinfo=timezone.utc)


def test_unknown_zone_for_time_is_a_decode_error(codec: Codec) -> None:
    """A time with an unknown zone has no offset to fall back to: DecodeError."""
    with pytest.raises(DecodeError, match="'k'"):
        codec.decode("k", b'{"__kvkit__":"time","v":"12:00:00","tz":"No/Such_Zone"}')


@pytest.mark.parametrize(
    "value",
    [
        Point(1, 2),
        collections.OrderedDict(a=1, b=(2,)),
        collections.defaultdict(list, a=[1]),
        collections.Counter("aab"),
        MyStr("s"),
        MyInt(5),
        MyFloat(2.5),
        MyList([1, (2,)]),
        MySet({1, 2}),
        MyFrozenset({"a"}),
        MyDatetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
        MyDate(2024, 1, 2),
        MyTime(3, 4, 5, 6),
        MyUUID(int=5),
        MyBytes(b"\x00x"),
        MyDecimal("1.50"),
    ],
    ids=["namedtuple", "OrderedDict", "defaultdict", "Counter", "str sub", "int sub", "float sub",
         "list sub", "set sub", "frozenset sub", "datetime sub", "date sub", "time sub",
         "UUID sub", "bytes sub", "Decimal sub"],
)  # fmt: skip
def test_subclasses_decode_as_base_type(codec: Codec, value: Any) -> None:
    """Subclasses of the supported types are stored as, and decode to, the base type."""
    out = roundtrip(codec, value)
    bases = (tuple, dict, str, int, float, list, set, frozenset, datetime, date, time,
             uuid.UUID, bytes, Decimal)  # fmt: skip
    base = next(t for t in bases if isinstance(value, t))
    assert type(out) is base
    assert out == value
    assert_same(out, roundtrip(codec, out))
    assert codec.encode("k", value) == codec.encode("k", out)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Level.HIGH, 2),
        (Mode.FAST, "fast"),
        (Color.RED, "red"),
        (Color.GREEN, 2),
        (Flags.A | Flags.B, 3),
        ([Level.LOW, {"m": Mode.FAST}], [1, {"m": "fast"}]),
        ({Mode.FAST: 1}, {"fast": 1}),
        ({Color.RED: Level.LOW}, {"red": 1}),
        ((Level.LOW,), (1,)),
        ({Level.LOW, Level.HIGH}, {1, 2}),
    ],
    ids=["IntEnum", "str Enum", "Enum str", "Enum int", "IntFlag", "nested", "str enum key",
         "enum key", "in tuple", "in set"],
)  # fmt: skip
def test_enums_are_stored_as_their_value(codec: Codec, value: Any, expected: Any) -> None:
    """Enum members are stored as their plain value and decode to it."""
    assert_same(expected, roundtrip(codec, value))


def test_int_enum_is_stored_as_plain_json(codec: Codec) -> None:
    """An IntEnum member is stored byte-for-byte like its int value."""
    assert codec.encode("k", Level.HIGH) == b"2"
    assert codec.encode("k", {"l": Level.HIGH, "m": Mode.FAST}) == b'{"l":2,"m":"fast"}'


@pytest.mark.skipif(sys.version_info < (3, 11), reason="StrEnum is new in 3.11")
def test_strenum(codec: Codec) -> None:
    """A StrEnum member is stored as its str value."""
    strenum = enum.StrEnum("S", {"A": "a"})  # type: ignore[attr-defined,unused-ignore]
    assert codec.encode("k", strenum.A) == b'"a"'
    assert_same({"a": "a"}, roundtrip(codec, {strenum.A: strenum.A}))


# ----------------------------------------------------------------------------- exact bytes

EXACT_PLAIN = [
    ({"a": [1, 2]}, b'{"a":[1,2]}'),
    ("x", b'"x"'),
    (None, b"null"),
    (True, b"true"),
    (False, b"false"),
    (0, b"0"),
    (-5, b"-5"),
    (2**64 - 1, b"18446744073709551615"),
    (1.5, b"1.5"),
    (0.1, b"0.1"),
    (-0.0, b"-0.0"),
    ([], b"[]"),
    ({}, b"{}"),
    ("caf\u00e9 \u4e16 \U0001f600", "\"caf\u00e9 \u4e16 \U0001f600\"".encode()),
    ("\x00\x1f\t\n\"\\", b'"\\u0000\\u001f\\t\\n\\"\\\\"'),
    ({"k": None, "l": [True, {"m": "n"}]}, b'{"k":null,"l":[true,{"m":"n"}]}'),
]  # fmt: skip


@pytest.mark.parametrize(("value", "expected"), EXACT_PLAIN)
def test_plain_values_are_stored_as_plain_json(codec: Codec, value: Any, expected: bytes) -> None:
    """Plain values are stored as exactly their compact JSON text, readable anywhere."""
    data = codec.encode("k", value)
    assert data == expected
    assert type(data) is bytes
    assert json.loads(data) == value


@pytest.mark.parametrize("value", list(PLAIN_VALUES.values()), ids=list(PLAIN_VALUES))
def test_plain_values_match_stdlib_json(codec: Codec, value: Any) -> None:
    """Plain values are stored like json.dumps(compact, ensure_ascii=False) would."""
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert codec.encode("k", value) == expected


EXACT_TAGGED = [
    (datetime(2024, 5, 1, 12, 30, 0, 123),
     b'{"__kvkit__":"datetime","v":"2024-05-01T12:30:00.000123"}'),
    (datetime(2024, 5, 1, tzinfo=timezone.utc),
     b'{"__kvkit__":"datetime","v":"2024-05-01T00:00:00+00:00"}'),
    (datetime(2024, 1, 1, tzinfo=PARIS),
     b'{"__kvkit__":"datetime","v":"2024-01-01T00:00:00+01:00","tz":"Europe/Paris"}'),
    (date(2024, 5, 1), b'{"__kvkit__":"date","v":"2024-05-01"}'),
    (time(12, 30, 0, 500000), b'{"__kvkit__":"time","v":"12:30:00.500000"}'),
    (time(1, 2, tzinfo=timezone(timedelta(hours=2))), b'{"__kvkit__":"time","v":"01:02:00+02:00"}'),
    (U1, b'{"__kvkit__":"uuid","v":"12345678-1234-5678-1234-567812345678"}'),
    (Decimal("1.10"), b'{"__kvkit__":"decimal","v":"1.10"}'),
    (b"\x00\x01\xff", b'{"__kvkit__":"bytes","v":"AAH/"}'),
    ((1, "a"), b'{"__kvkit__":"tuple","v":[1,"a"]}'),
    ({"b", "a", "c"}, b'{"__kvkit__":"set","v":["a","b","c"]}'),
    ({3, 1, 2}, b'{"__kvkit__":"set","v":[1,2,3]}'),
    (frozenset({2, 1}), b'{"__kvkit__":"frozenset","v":[1,2]}'),
    (2**64, b'{"__kvkit__":"int","v":"18446744073709551616"}'),
    ([-(2**63) - 1], b'[{"__kvkit__":"int","v":"-9223372036854775809"}]'),
    ({"__kvkit__": 1}, b'{"__kvkit__":"dict","v":{"__kvkit__":1}}'),
    ({"a": {"__kvkit__": (1,)}},
     b'{"a":{"__kvkit__":"dict","v":{"__kvkit__":{"__kvkit__":"tuple","v":[1]}}}}'),
]  # fmt: skip


@pytest.mark.parametrize(("value", "expected"), EXACT_TAGGED)
def test_tagged_form_is_as_documented(codec: Codec, value: Any, expected: bytes) -> None:
    """The tagged form is the documented {"__kvkit__": tag, "v": ...} object."""
    assert codec.encode("k", value) == expected
    assert_same(value, codec.decode("k", expected))


def test_tags_are_documented_in_module_docstring() -> None:
    """Every tag the decoder knows appears in the module docstring's table."""
    doc = _serde.__doc__ or ""
    for tag in _serde._UNTAGGERS:
        assert f"``{tag}``" in doc


@pytest.mark.skipif(not HAVE_ORJSON, reason="needs orjson")
@pytest.mark.parametrize(
    "value",
    [*PLAIN_VALUES.values(), *SPECIAL_VALUES.values()],
    ids=[*PLAIN_VALUES, *SPECIAL_VALUES],
)
def test_orjson_and_stdlib_write_identical_bytes(value: Any) -> None:
    """Both paths write the same bytes, so either can read what the other wrote."""
    fast, slow = make_codec("orjson"), make_codec("json")
    data = fast.encode("k", value)
    assert data == slow.encode("k", value)
    assert_same(fast.decode("k", data), slow.decode("k", data))


@pytest.mark.skipif(not HAVE_ORJSON, reason="needs orjson")
def test_exponent_floats_decode_identically_across_paths() -> None:
    """Floats in exponent form may differ in text between paths but not in value."""
    values = [1e16, 1e-7, 1.5e300, 2.5e-300, 1e22]
    fast, slow = make_codec("orjson"), make_codec("json")
    a, b = fast.encode("k", values), slow.encode("k", values)
    assert fast.decode("k", b) == slow.decode("k", a) == values


def test_sets_encode_deterministically(codec: Codec) -> None:
    """Sets of one orderable type are written sorted, whatever the hash order."""
    words = [f"w{i}" for i in range(50)]
    first = codec.encode("k", set(words))
    assert first == codec.encode("k", set(reversed(words)))
    assert json.loads(first)["v"] == sorted(words)
    pairs = [(w, i) for i, w in enumerate(words)]
    assert codec.encode("k", set(pairs)) == codec.encode("k", set(reversed(pairs)))


def test_unorderable_sets_still_round_trip(codec: Codec) -> None:
    """Sets whose items cannot be compared are written in iteration order."""
    for value in (
        {datetime(2024, 1, 1), datetime(2024, 1, 1, tzinfo=timezone.utc)},
        {(1,), ("a",)},
        {1, "a", None},
    ):
        assert_same(value, roundtrip(codec, value))


# ----------------------------------------------------------------------------- user dicts


@pytest.mark.parametrize(
    "value",
    [
        {"__kvkit__": "uuid", "v": "12345678-1234-5678-1234-567812345678"},
        {"__kvkit__": "datetime", "v": "not a date"},
        {"__kvkit__": "nope"},
        {"__kvkit__": "dict", "v": {"__kvkit__": "dict"}},
        {"__kvkit__": None, "v": 1, "extra": [1]},
        [{"__kvkit__": "tuple", "v": [1, 2]}],
    ],
)
def test_user_dicts_with_tag_key_are_escaped(codec: Codec, value: Any) -> None:
    """A user dict holding "__kvkit__" is escaped and never read back as a tag."""
    data = codec.encode("k", value)
    assert_same(value, codec.decode("k", data))
    outer = json.loads(data)
    first = outer[0] if isinstance(outer, list) else outer
    assert first["__kvkit__"] == "dict"


def test_plain_payload_mentioning_the_tag_is_untouched(codec: Codec) -> None:
    """Strings equal to the tag name are plain data."""
    value = ["__kvkit__", {"k": "__kvkit__", "__kvkit___": 1}, '"__kvkit__"']
    assert codec.decode("k", codec.encode("k", value)) == value


def test_foreign_json_without_tags_decodes_as_is(codec: Codec) -> None:
    """JSON written by another program decodes to plain Python values."""
    data = b' {"a" : [1, 2.5, "x", null, true], "b": {"c": {}}}\n'
    assert codec.decode("k", data) == {"a": [1, 2.5, "x", None, True], "b": {"c": {}}}


# ----------------------------------------------------------------------------- models


@dataclasses.dataclass
class Address:
    city: str
    since: date


@dataclasses.dataclass(frozen=True)
class FrozenDC:
    x: int


@dataclasses.dataclass
class User:
    id: uuid.UUID
    name: str
    created: datetime
    tags: tuple[str, ...]
    roles: set[str]
    address: Address
    score: float = 1.5
    blob: bytes = b"\x00"
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


@attrs.define
class AttrsItem:
    sku: str
    price: Decimal
    when: datetime
    _secret: str = "s"


@attrs.frozen
class AttrsFrozen:
    a: int
    b: tuple[int, ...]


class PydItem(pydantic.BaseModel):
    id: uuid.UUID
    at: datetime
    tags: set[str]
    pair: tuple[int, int]
    child: Address | None = None


USER = User(
    id=U1,
    name="alice",
    created=datetime(2024, 5, 1, tzinfo=timezone.utc),
    tags=("a", "b"),
    roles={"admin"},
    address=Address("Paris", date(2020, 1, 1)),
    extras={"__kvkit__": 1},
)
USER_DICT = {
    "id": U1,
    "name": "alice",
    "created": datetime(2024, 5, 1, tzinfo=timezone.utc),
    "tags": ("a", "b"),
    "roles": {"admin"},
    "address": {"city": "Paris", "since": date(2020, 1, 1)},
    "score": 1.5,
    "blob": b"\x00",
    "extras": {"__kvkit__": 1},
}


def test_dataclass_is_stored_as_dict(codec: Codec) -> None:
    """A dataclass is stored as its dict form; nested special values keep their types."""
    assert_same(USER_DICT, roundtrip(codec, USER))
    assert codec.encode("k", USER) == codec.encode("k", USER_DICT)


def test_nested_dataclasses_in_containers(codec: Codec) -> None:
    """Dataclasses nested in lists and dicts become dicts too."""
    value = {"users": [USER, FrozenDC(3)], "t": (FrozenDC(1),)}
    assert_same(
        {"users": [USER_DICT, {"x": 3}], "t": ({"x": 1},)},
        roundtrip(codec, value),
    )


def test_attrs_is_stored_as_dict(codec: Codec) -> None:
    """attrs instances (slotted, frozen, private attributes) are stored as dicts."""
    when = datetime(2024, 1, 2, 3, 4, 5, 6)
    item = AttrsItem("sku-1", Decimal("9.99"), when)
    assert_same(
        {"sku": "sku-1", "price": Decimal("9.99"), "when": when, "_secret": "s"},
        roundtrip(codec, item),
    )
    assert_same({"a": 1, "b": (2, 3)}, roundtrip(codec, AttrsFrozen(1, (2, 3))))


def test_pydantic_v2_is_stored_as_model_dump(codec: Codec) -> None:
    """A pydantic v2 model is stored as model_dump(mode="python")."""
    at = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    item = PydItem(id=U1, at=at, tags={"x"}, pair=(1, 2), child=Address("Oslo", date(2021, 1, 1)))
    expected = {
        "id": U1,
        "at": at,
        "tags": {"x"},
        "pair": (1, 2),
        "child": {"city": "Oslo", "since": date(2021, 1, 1)},
    }
    assert_same(expected, roundtrip(codec, item))
    assert_same([expected], roundtrip(codec, [item]))


def test_pydantic_v1_is_stored_as_dict(codec: Codec) -> None:
    """A pydantic v1 model (pydantic.v1) is stored as .dict()."""
    v1 = pytest.importorskip("pydantic.v1")

    class Old(v1.BaseModel):  # type: ignore[misc,name-defined]
        n: int
        at: date
        ids: tuple[Any, ...]

    value = Old(n=1, at=date(2024, 1, 1), ids=(U1,))
    assert_same({"n": 1, "at": date(2024, 1, 1), "ids": (U1,)}, roundtrip(codec, value))


def test_model_dump_failure_is_a_serialization_error(codec: Codec) -> None:
    """An exception while converting a model becomes a SerializationError naming it."""

    class Broken(pydantic.BaseModel):
        x: int

        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            raise RuntimeError("secret-in-message")

    with pytest.raises(SerializationError) as info:
        codec.encode("m:1", Broken(x=1))
    assert "'m:1'" in str(info.value) and "Broken" in str(info.value)
    assert "secret-in-message" not in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


# ----------------------------------------------------------------------------- encode errors


class Secretive:
    def __repr__(self) -> str:
        return "SECRET-TOKEN-123"

    __str__ = __repr__


def _gen() -> Any:
    yield 1


def _socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.close()
    return s


UNSUPPORTED = [
    (object(), "object"),
    (lambda: 1, "function"),
    (len, "builtin_function_or_method"),
    (Secretive(), "Secretive"),
    (Secretive, "type"),
    (_socket(), "socket.socket"),
    (bytearray(b"x"), "bytearray"),
    (memoryview(b"x"), "memoryview"),
    (1 + 2j, "complex"),
    (range(3), "range"),
    (..., "ellipsis"),
    (_gen(), "generator"),
    (pathlib.Path("/tmp"), "PosixPath" if os.name == "posix" else "WindowsPath"),
    (timedelta(seconds=1), "timedelta"),
    (timezone.utc, "timezone"),
    (Exception("boom"), "Exception"),
]


@pytest.mark.parametrize(("value", "type_name"), UNSUPPORTED, ids=[n for _, n in UNSUPPORTED])
@pytest.mark.parametrize("where", ["top", "in list", "in dict", "in tuple", "deep"])
def test_unsupported_types_raise_serialization_error(
    codec: Codec, value: Any, type_name: str, where: str
) -> None:
    """Unsupported values raise SerializationError naming the key and the type only."""
    wrapped = {
        "top": value,
        "in list": [1, value],
        "in dict": {"a": 1, "b": value},
        "in tuple": ("x", value),
        "deep": [{"a": ({"b": [value]},)}],
    }[where]
    with pytest.raises(SerializationError) as info:
        codec.encode("user:1", wrapped)
    message = str(info.value)
    assert message.startswith("cannot serialize value for key 'user:1': ")
    assert f"{type_name}'" in message
    assert "supported: " in message
    assert "SECRET-TOKEN" not in message
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, KVKitError)


def test_unsupported_in_set_raises(codec: Codec) -> None:
    """An unsupported (hashable) set item raises SerializationError."""
    with pytest.raises(SerializationError, match="Secretive"):
        codec.encode("k", {1, Secretive()})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), MyFloat("nan")])
@pytest.mark.parametrize("where", ["top", "in list", "in dict", "in tuple", "in set", "deep"])
def test_non_finite_floats_are_rejected(codec: Codec, bad: float, where: str) -> None:
    """NaN and infinities are not JSON: SerializationError, never null or NaN."""
    wrapped = {
        "top": bad,
        "in list": [1.0, bad],
        "in dict": {"a": bad},
        "in tuple": (bad,),
        "in set": {bad},
        "deep": {"a": [{"b": [1, bad]}]},
    }[where]
    with pytest.raises(SerializationError, match=r"^cannot serialize value for key 'k': .*NaN"):
        codec.encode("k", wrapped)


@pytest.mark.parametrize(
    "value",
    [
        {1: "a"},
        {None: 1},
        {(1, 2): 3},
        {b"k": 1},
        {1.5: 1},
        {True: 1},
        {U1: 1},
        {Level.LOW: "x"},
        {"ok": {"nested": {2: 3}}},
        [{"a": 1}, {3: 4}],
        {"a": 1, 2: "b"},
    ],
    ids=["int", "None", "tuple", "bytes", "float", "bool", "uuid", "IntEnum", "nested",
         "in list", "mixed"],
)  # fmt: skip
def test_non_str_dict_keys_are_rejected(codec: Codec, value: Any) -> None:
    """Non-str dict keys raise SerializationError instead of turning into strings."""
    with pytest.raises(SerializationError, match=r"^cannot serialize value for key 'k': dict key"):
        codec.encode("k", value)


def test_str_subclass_keys_are_plain_keys(codec: Codec) -> None:
    """str-subclass keys are stored as plain str keys."""
    assert_same({"a": 1, "b": 2}, roundtrip(codec, {MyStr("a"): 1, "b": 2}))


def test_keys_colliding_after_conversion_are_rejected(codec: Codec) -> None:
    """Two keys that become the same str (an Enum and its value) are rejected."""
    with pytest.raises(SerializationError, match="same str key"):
        codec.encode("k", {Color.RED: 1, "red": 2})


class ListValued(enum.Enum):
    ITEMS = [1, 2]


@pytest.mark.parametrize(
    "value",
    [{FrozenDC(1)}, frozenset({(1, FrozenDC(1))}), {ListValued.ITEMS}, {frozenset({FrozenDC(2)})}],
    ids=["dataclass", "dataclass in tuple", "enum with list value", "in frozenset"],
)
def test_set_item_that_would_not_decode_hashable_is_rejected(codec: Codec, value: Any) -> None:
    """Set items that would decode unhashable (a dict or list) are rejected up front."""
    with pytest.raises(SerializationError, match="hashable"):
        codec.encode("k", value)


def test_non_str_keys_with_tag_key_are_converted_and_escaped(codec: Codec) -> None:
    """A dict with str-subclass keys and a "__kvkit__" key is both converted and escaped."""
    value = {MyStr("a"): (1,), "__kvkit__": 2}
    assert_same({"a": (1,), "__kvkit__": 2}, roundtrip(codec, value))


def test_reference_cycles_are_rejected(codec: Codec) -> None:
    """A self-referencing container raises SerializationError, not RecursionError."""
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    looped: dict[str, Any] = {}
    looped["self"] = looped
    for value in (cyclic, looped, {"a": cyclic}):
        with pytest.raises(SerializationError, match="cycle"):
            codec.encode("k", value)


def test_absurd_nesting_is_rejected(codec: Codec) -> None:
    """Nesting deeper than the interpreter can walk raises SerializationError."""
    value: Any = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(SerializationError, match="too deeply"):
        codec.encode("k", value)


@pytest.mark.parametrize("depth", [200, 260, 300])
def test_deep_but_sane_nesting_round_trips(codec: Codec, depth: int) -> None:
    """Nesting beyond orjson's 254-level limit still round-trips (stdlib fallback)."""
    value: Any = [1, (2,)]
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    data = codec.encode("k", value)
    assert codec.decode("k", data) == value
    assert data == make_codec("json").encode("k", value)


def test_lone_surrogates_are_rejected(codec: Codec) -> None:
    """A str with a lone surrogate is not UTF-8 encodable: SerializationError."""
    for value in ("\ud800", ["ok", {"a": "x\udfff"}]):
        with pytest.raises(SerializationError, match="surrogate"):
            codec.encode("k", value)


def test_int_beyond_str_digit_limit_is_rejected(codec: Codec) -> None:
    """An int too long to print (sys.int_max_str_digits) raises SerializationError."""
    if not hasattr(sys, "get_int_max_str_digits") or sys.get_int_max_str_digits() == 0:
        pytest.skip("no int digit limit on this interpreter")
    with pytest.raises(SerializationError, match="digits"):
        codec.encode("k", 10 ** (sys.get_int_max_str_digits() + 10))


def test_failing_tzinfo_is_a_serialization_error(codec: Codec) -> None:
    """Exceptions from user objects during encoding become SerializationError."""

    class BadTZ(tzinfo):
        def utcoffset(self, dt: Any) -> Any:
            raise RuntimeError("nope")

        def dst(self, dt: Any) -> Any:
            return None

        def tzname(self, dt: Any) -> Any:
            return "BAD"

    with pytest.raises(SerializationError, match="'k'"):
        codec.encode("k", datetime(2024, 1, 1, tzinfo=BadTZ()))


def test_encode_never_mutates_its_input(codec: Codec) -> None:
    """Encoding converts into new objects and leaves the caller's value untouched."""
    import copy

    value = {"a": [(1, 2), {U1}], "b": {"__kvkit__": [date(2024, 1, 1)]}, "c": [2**70]}
    snapshot = copy.deepcopy(value)
    codec.encode("k", value)
    assert value == snapshot
    assert type(value["a"][0]) is tuple  # type: ignore[index]


# ----------------------------------------------------------------------------- decode errors


def _check_decode_error(codec: Codec, data: bytes, key: str = "user:1") -> DecodeError:
    with pytest.raises(DecodeError) as info:
        codec.decode(key, data)
    assert str(info.value).startswith(f"cannot decode value for key {key!r}: ")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, KVKitError)
    return info.value


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",
        b"\x80abc",
        b'"\xc3"',
        b'{"a":"\xed\xa0\x80"}',  # an encoded surrogate is not UTF-8
        b'"\xf0\x9f\x98"',
        b"\xfe\xff\x00\x31",  # UTF-16 with BOM
    ],
)
def test_invalid_utf8_is_a_decode_error(codec: Codec, data: bytes) -> None:
    """Bytes that are not UTF-8 raise DecodeError naming the key."""
    _check_decode_error(codec, data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b" ",
        b"{",
        b'{"a":',
        b'{"a":1',
        b"[1,2",
        b'"abc',
        b"tru",
        b"nul",
        b"1 2",
        b"{'a': 1}",
        b"[1,]",
        b'{"a":1,}',
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"[NaN]",
        b"undefined",
        b"\xef\xbb\xbf1",  # UTF-8 BOM
        b"01",
        b"0x10",
        b"'single'",
    ],
)
def test_malformed_json_is_a_decode_error(codec: Codec, data: bytes) -> None:
    """Malformed or non-standard JSON raises DecodeError naming the key."""
    _check_decode_error(codec, data)


@pytest.mark.parametrize(
    "value",
    [{"a": [1, 2, {"b": "c"}]}, USER_DICT, SPECIAL_VALUES["everything nested"], "text", [1.5]],
    ids=["dict", "dataclass dict", "nested special", "str", "list"],
)
def test_truncated_json_is_a_decode_error(codec: Codec, value: Any) -> None:
    """Every strict prefix of an encoded dict/list/str raises DecodeError."""
    data = codec.encode("k", value)
    for end in range(len(data)):
        _check_decode_error(codec, data[:end])


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'{"__kvkit__":"nope","v":1}', "unknown tag 'nope'"),
        (b'{"__kvkit__":"","v":1}', "unknown tag"),
        (b'{"__kvkit__":"Datetime","v":"2024-01-01T00:00:00"}', "unknown tag"),
        (b'{"__kvkit__":1,"v":1}', "tag is not a JSON string"),
        (b'{"__kvkit__":null,"v":1}', "tag is not a JSON string"),
        (b'{"__kvkit__":["uuid"],"v":1}', "tag is not a JSON string"),
        (b'{"__kvkit__":"uuid"}', "no 'v'"),
        (b'{"__kvkit__":"uuid","v":"12345678-1234-5678-1234-567812345678","x":1}', "unexpected"),
        (b'{"__kvkit__":"date","v":"2024-01-01","tz":"UTC"}', "unexpected"),
        (b'{"__kvkit__":"bytes","v":"!!!!"}', "not base64"),
        (b'{"__kvkit__":"bytes","v":"AAH"}', "not base64"),
        (b'{"__kvkit__":"bytes","v":"AA H/"}', "not base64"),
        (b'{"__kvkit__":"bytes","v":"AAH/\\n"}', "not base64"),
        (b'{"__kvkit__":"bytes","v":"\xc3\xa9\xc3\xa9"}', "not base64"),
        (b'{"__kvkit__":"bytes","v":5}', "must be a JSON string"),
        (b'{"__kvkit__":"datetime","v":"yesterday"}', "not an ISO 8601 datetime"),
        (b'{"__kvkit__":"datetime","v":"2024-13-01T00:00:00"}', "not an ISO 8601 datetime"),
        (b'{"__kvkit__":"datetime","v":"2024-02-30T00:00:00"}', "not an ISO 8601 datetime"),
        (b'{"__kvkit__":"datetime","v":""}', "not an ISO 8601 datetime"),
        (b'{"__kvkit__":"datetime","v":1714000000}', "must be a JSON string"),
        (b'{"__kvkit__":"datetime","v":"2024-01-01T00:00:00","tz":"UTC"}', "naive"),
        (b'{"__kvkit__":"datetime","v":"2024-01-01T00:00:00+00:00","tz":5}', "'tz'"),
        (b'{"__kvkit__":"date","v":"2024-02-30"}', "not an ISO 8601 date"),
        (b'{"__kvkit__":"date","v":null}', "must be a JSON string"),
        (b'{"__kvkit__":"time","v":"25:00"}', "not an ISO 8601 time"),
        (b'{"__kvkit__":"time","v":"12:00+01:00","tz":"Europe/Paris"}', "both"),
        (b'{"__kvkit__":"uuid","v":"not-a-uuid"}', "not a UUID"),
        (b'{"__kvkit__":"uuid","v":[1]}', "must be a JSON string"),
        (b'{"__kvkit__":"decimal","v":"one"}', "not a decimal"),
        (b'{"__kvkit__":"decimal","v":""}', "not a decimal"),
        (b'{"__kvkit__":"decimal","v":1.5}', "must be a JSON string"),
        (b'{"__kvkit__":"int","v":"12a"}', "not a decimal integer"),
        (b'{"__kvkit__":"int","v":""}', "not a decimal integer"),
        (b'{"__kvkit__":"int","v":"-"}', "not a decimal integer"),
        (b'{"__kvkit__":"int","v":" 1"}', "not a decimal integer"),
        (b'{"__kvkit__":"int","v":"\xd9\xa3"}', "not a decimal integer"),
        (b'{"__kvkit__":"int","v":5}', "must be a JSON string"),
        (b'{"__kvkit__":"tuple","v":{}}', "must be a JSON list"),
        (b'{"__kvkit__":"tuple","v":"ab"}', "must be a JSON list"),
        (b'{"__kvkit__":"set","v":[[1]]}', "not hashable"),
        (b'{"__kvkit__":"set","v":[{"a":1}]}', "not hashable"),
        (b'{"__kvkit__":"frozenset","v":[[1]]}', "not hashable"),
        (b'{"__kvkit__":"set","v":1}', "must be a JSON list"),
        (b'{"__kvkit__":"dict","v":[]}', "must be a JSON dict"),
        (b'[1,{"a":{"__kvkit__":"nope","v":1}}]', "unknown tag"),
        (b'{"__kvkit__":"tuple","v":[{"__kvkit__":"uuid","v":"x"}]}', "not a UUID"),
    ],
)
def test_malformed_tags_are_decode_errors(codec: Codec, data: bytes, fragment: str) -> None:
    """Unknown tags and malformed tagged values raise DecodeError naming the key."""
    error = _check_decode_error(codec, data)
    assert fragment in str(error)


def test_decode_error_does_not_echo_long_data(codec: Codec) -> None:
    """Decode errors never include the stored bytes (which may be secret)."""
    secret = "SECRET-" + "x" * 50
    for data in (
        f'{{"__kvkit__":"datetime","v":"{secret}"}}'.encode(),
        f'{{"__kvkit__":"bytes","v":"{secret}"}}'.encode(),
        f'{{"__kvkit__":"uuid","v":"{secret}"}}'.encode(),
        f'{{"a":"{secret}"'.encode(),
        f'{{"__kvkit__":"{secret}","v":1}}'.encode(),
    ):
        assert "SECRET-" + "x" * 40 not in str(_check_decode_error(codec, data))


def test_decode_accepts_bytes_likes_and_str(codec: Codec) -> None:
    """bytearray, memoryview and str (decode_responses clients) are accepted."""
    data = codec.encode("k", {"a": (1,)})
    for form in (bytearray(data), memoryview(data), data.decode()):
        assert codec.decode("k", form) == {"a": (1,)}  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [None, 5, ["x"], "\ud800"])
def test_decode_rejects_non_bytes(codec: Codec, data: Any) -> None:
    """Anything that is not bytes-like or a UTF-8 str raises DecodeError."""
    _check_decode_error(codec, data)


def test_very_deep_json_is_value_or_decode_error(codec: Codec) -> None:
    """Absurdly nested JSON decodes or raises DecodeError, never RecursionError."""
    for depth in (1030, 100_000):
        data = b"[" * depth + b"]" * depth
        try:
            value = codec.decode("k", data)
        except DecodeError:
            continue
        assert isinstance(value, list)


def test_deep_tagged_json_is_value_or_decode_error(codec: Codec) -> None:
    """Deeply nested tags decode or raise DecodeError, never RecursionError."""
    depth = 5000
    data = b'{"__kvkit__":"tuple","v":[' * depth + b"]}" * depth
    with contextlib.suppress(DecodeError):
        codec.decode("k", data)


def test_ints_too_long_to_convert_are_decode_errors(codec: Codec) -> None:
    """Ints longer than Python converts (plain or tagged) raise DecodeError."""
    if not hasattr(sys, "get_int_max_str_digits") or sys.get_int_max_str_digits() == 0:
        pytest.skip("no int digit limit on this interpreter")
    digits = b"7" * (sys.get_int_max_str_digits() + 1)
    _check_decode_error(codec, b"[" + digits + b"]")
    error = _check_decode_error(codec, b'{"__kvkit__":"int","v":"' + digits + b'"}')
    assert "too many digits" in str(error)


def test_deep_tags_within_json_limits_are_decode_errors(codec: Codec) -> None:
    """Tags nested deeper than the interpreter recursion allows raise DecodeError."""
    depth = 450  # 900 JSON levels: within orjson's limit, too deep to rebuild
    data = b'{"__kvkit__":"tuple","v":[' * depth + b"]}" * depth
    try:
        value = codec.decode("k", data)
    except DecodeError as exc:
        assert "nested too deeply" in str(exc)
    else:
        assert isinstance(value, tuple)


def test_64_bit_edge_ints_decode_exactly(codec: Codec) -> None:
    """Plain ints at the 64-bit edges (written by anyone) decode exactly on both paths."""
    data = b"[18446744073709551615,-9223372036854775808]"
    assert codec.decode("k", data) == [2**64 - 1, -(2**63)]


# ----------------------------------------------------------------------------- pickle safety


class PlainObject:
    def __init__(self) -> None:
        self.secret = "s3cr3t"


class SystemExploit:
    """The classic pickle payload: unpickling runs os.system."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {shlex.quote(str(self.path))}",))


class TouchExploit:
    """A pickle payload that creates a file without a shell."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (self.path,))


def test_pickle_payload_control(tmp_path: pathlib.Path) -> None:
    """Control: unpickling the shell-free payload really creates the marker file."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(TouchExploit(marker)))
    assert marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize(
    "obj", [PlainObject(), {"a": 1}, [1, 2], "text", 12, 1.5, None, True, (1,), {1}]
)
def test_pickle_bytes_are_a_decode_error(codec: Codec, protocol: int, obj: Any) -> None:
    """Pickled objects in the store raise DecodeError; nothing is unpickled."""
    _check_decode_error(codec, pickle.dumps(obj, protocol=protocol))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("payload", [SystemExploit, TouchExploit])
def test_malicious_pickle_runs_nothing(
    codec: Codec, tmp_path: pathlib.Path, protocol: int, payload: type
) -> None:
    """A malicious pickle payload gives DecodeError and never executes."""
    marker = tmp_path / "pwned"
    data = pickle.dumps(payload(marker), protocol=protocol)
    for blob in (data, data.decode("latin-1").encode("utf-8")):
        error = _check_decode_error(codec, blob)
        assert "system" not in str(error)
    assert not marker.exists()


# ----------------------------------------------------------------------------- custom serializer


class JsonStrSerializer:
    """A custom serializer returning str."""

    def dumps(self, value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class BytesSerializer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def dumps(self, value: Any) -> bytes:
        self.calls.append(("dumps", value))
        return repr(value).encode()

    def loads(self, data: bytes) -> Any:
        self.calls.append(("loads", data))
        return ("loaded", data)


class FailingSerializer:
    def dumps(self, value: Any) -> bytes:
        raise ValueError(f"cannot dump {value!r} SECRET")

    def loads(self, data: bytes) -> Any:
        raise KeyError(f"cannot load {data!r} SECRET")


def test_custom_serializer_str_result_is_utf8() -> None:
    """A custom dumps returning str is stored as UTF-8; loads gets the bytes."""
    custom = Codec(JsonStrSerializer())
    assert custom.name == "custom"
    data = custom.encode("k", {"b": 1, "a": "\u00e9"})
    assert data == '{"a": "\u00e9", "b": 1}'.encode()
    assert custom.decode("k", data) == {"a": "\u00e9", "b": 1}


def test_custom_serializer_bytes_result_and_no_tag_handling() -> None:
    """A custom codec passes values through untouched: no tags, no conversion."""
    ser = BytesSerializer()
    custom = Codec(ser)
    assert custom.encode("k", (1, 2)) == b"(1, 2)"
    data = b'{"__kvkit__":"tuple","v":[1]}'
    assert custom.decode("k", data) == ("loaded", data)
    assert ser.calls == [("dumps", (1, 2)), ("loads", data)]


def test_custom_serializer_exceptions_are_wrapped() -> None:
    """Exceptions in dumps/loads become SerializationError/DecodeError, chained."""
    custom = Codec(FailingSerializer())
    with pytest.raises(SerializationError) as enc:
        custom.encode("user:1", Secretive())
    assert "'user:1'" in str(enc.value) and "Secretive" in str(enc.value)
    assert "SECRET" not in str(enc.value)
    assert isinstance(enc.value.__cause__, ValueError)
    with pytest.raises(DecodeError) as dec:
        custom.decode("user:2", b"\x00")
    assert "'user:2'" in str(dec.value) and "SECRET" not in str(dec.value)
    assert isinstance(dec.value.__cause__, KeyError)


@pytest.mark.parametrize(
    ("result", "expected"),
    [(bytearray(b"ab"), b"ab"), (memoryview(b"cd"), b"cd"), ("\u00e9", b"\xc3\xa9")],
)
def test_custom_serializer_bytes_like_results(result: Any, expected: bytes) -> None:
    """bytes-like and str results of a custom dumps are stored as bytes."""

    class Ser:
        def dumps(self, value: Any) -> Any:
            return result

        def loads(self, data: bytes) -> Any:
            return data

    out = Codec(Ser()).encode("k", 1)
    assert out == expected and type(out) is bytes


@pytest.mark.parametrize("result", [None, 5, ["x"], "\ud800"])
def test_custom_serializer_bad_results_are_serialization_errors(result: Any) -> None:
    """A custom dumps returning neither bytes nor UTF-8 str raises SerializationError."""

    class Ser:
        def dumps(self, value: Any) -> Any:
            return result

        def loads(self, data: bytes) -> Any:
            return data

    with pytest.raises(SerializationError, match="'k'"):
        Codec(Ser()).encode("k", 1)


@pytest.mark.parametrize("bad", [object(), json.dumps, "json", type("NoLoads", (), {"dumps": 1})()])
def test_invalid_serializer_is_a_config_error(bad: Any) -> None:
    """An object without callable dumps/loads is refused up front."""
    with pytest.raises(ConfigError):
        Codec(bad)


def test_stdlib_json_module_works_as_custom_serializer() -> None:
    """The json module itself satisfies the Serializer protocol."""
    custom = Codec(json)  # type: ignore[arg-type]
    assert custom.decode("k", custom.encode("k", {"a": [1]})) == {"a": [1]}


# ----------------------------------------------------------------------------- without orjson


def _load_without_orjson(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setitem(sys.modules, "orjson", None)  # makes "import orjson" fail
    spec = importlib.util.spec_from_file_location("kvkit._serde_without_orjson", _serde.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_module_without_orjson_falls_back_to_stdlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without orjson the default codec is the stdlib one and writes the same bytes."""
    module = _load_without_orjson(monkeypatch)
    assert module.HAVE_ORJSON is False
    codec = module.Codec()
    assert codec.name == "json"
    assert module.default_codec().name == "json"
    for value in [*PLAIN_VALUES.values(), *SPECIAL_VALUES.values()]:
        data = codec.encode("k", value)
        assert data == Codec().encode("k", value)
        assert_same(value, codec.decode("k", data))
    with pytest.raises(SerializationError):
        codec.encode("k", object())
    with pytest.raises(DecodeError):
        codec.decode("k", b"\x80")


# ----------------------------------------------------------------------------- fuzzing

ZONES = [timezone.utc, PARIS, NEW_YORK, timezone(timedelta(hours=-7))]
_SCALAR_MAKERS: list[Callable[[random.Random], Any]] = [
    lambda r: None,
    lambda r: r.random() < 0.5,
    lambda r: r.randint(-(2**70), 2**70) if r.random() < 0.1 else r.randint(-1000, 1000),
    lambda r: r.uniform(-1e6, 1e6),
    lambda r: "".join(r.choice("ab\u00e9\u4e16\U0001f600\"\\\n_") for _ in range(r.randint(0, 6))),
    lambda r: "__kvkit__",
    lambda r: datetime(2000, 1, 1) + timedelta(microseconds=r.randint(0, 10**15)),
    lambda r: datetime(2000, 1, 1, tzinfo=r.choice(ZONES)) + timedelta(minutes=r.randrange(10**7)),
    lambda r: date(2000, 1, 1) + timedelta(days=r.randint(0, 10**4)),
    lambda r: time(r.randint(0, 23), r.randint(0, 59), r.randint(0, 59), r.randint(0, 999999)),
    lambda r: uuid.UUID(int=r.getrandbits(128)),
    lambda r: Decimal(r.randint(-(10**12), 10**12)).scaleb(r.randint(-10, 10)),
    lambda r: r.randbytes(r.randint(0, 8)),
]  # fmt: skip


_KEY_SUFFIXES = ["", "\u00e9", "__kvkit__", " "]


def random_value(r: random.Random, depth: int = 0, hashable: bool = False) -> Any:
    """A random supported value (hashable ones for set items)."""
    kinds = ["scalar"] * 4
    if depth < 4:
        kinds += ["tuple", "frozenset"] + ([] if hashable else ["list", "dict", "set", "tagdict"])
    kind = r.choice(kinds)
    n = r.randint(0, 4)
    if kind == "scalar":
        return r.choice(_SCALAR_MAKERS)(r)
    if kind == "tuple":
        return tuple(random_value(r, depth + 1, hashable) for _ in range(n))
    if kind == "frozenset":
        return frozenset(random_value(r, depth + 1, True) for _ in range(n))
    if kind == "set":
        return {random_value(r, depth + 1, True) for _ in range(n)}
    if kind == "list":
        return [random_value(r, depth + 1) for _ in range(n)]
    out = {f"k{i}{r.choice(_KEY_SUFFIXES)}": random_value(r, depth + 1) for i in range(n)}
    if kind == "tagdict":
        out["__kvkit__"] = random_value(r, depth + 1)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_fuzz_round_trip(codec: Codec, seed: int) -> None:
    """Random nested supported values round-trip exactly on both paths."""
    r = random.Random(seed)
    for _ in range(25):
        value = random_value(r)
        data = codec.encode("k", value)
        assert_same(value, codec.decode("k", data))
        if HAVE_ORJSON:
            assert data == make_codec("json").encode("k", value)


@pytest.mark.parametrize("seed", range(20))
def test_fuzz_corrupted_bytes_only_raise_decode_error(codec: Codec, seed: int) -> None:
    """Randomly corrupted encodings decode or raise DecodeError, nothing else."""
    r = random.Random(1000 + seed)
    for _ in range(40):
        data = bytearray(codec.encode("k", random_value(r)))
        for _ in range(r.randint(1, 4)):
            op = r.randrange(3)
            pos = r.randrange(len(data) + 1)
            if op == 0 and data:
                del data[min(pos, len(data) - 1)]
            elif op == 1:
                data.insert(pos, r.choice(b'{}[]",:\\0a\x80\xff '))
            elif data:
                data[min(pos, len(data) - 1)] = r.randrange(256)
        with contextlib.suppress(DecodeError):
            codec.decode("k", bytes(data))


@pytest.mark.parametrize("seed", range(10))
def test_fuzz_random_tag_objects_only_raise_decode_error(codec: Codec, seed: int) -> None:
    """Random tag objects with random payloads decode or raise DecodeError."""
    r = random.Random(2000 + seed)
    payloads: list[Any] = [None, 1, -1, 1.5, True, "", "x", "2024-01-01", "AAH/", "12:00", "1.5",
                           str(U1), [], [1], [[1]], {}, {"a": 1}]  # fmt: skip
    tags = [*_serde._UNTAGGERS, "", "bogus", 1, None]
    for _ in range(200):
        obj: dict[str, Any] = {"__kvkit__": r.choice(tags), "v": r.choice(payloads)}
        if r.random() < 0.2:
            obj["tz"] = r.choice(["Europe/Paris", "UTC", "", "../etc/passwd", 3, "No/Zone"])
        if r.random() < 0.1:
            del obj["v"]
        data = json.dumps([obj]).encode()
        with contextlib.suppress(DecodeError):
            codec.decode("k", data)


@pytest.mark.parametrize("force_stdlib", [False, True])
def test_decode_many_batch(force_stdlib):
    """decode_many skips missing values, restores tags and names a bad key."""
    import datetime as _dt

    codec = Codec(_force_stdlib=force_stdlib)
    when = _dt.datetime(2024, 1, 2, 3, 4, 5)
    raws = [codec.encode("a", {"x": 1}), None, codec.encode("c", when), codec.encode("d", "s")]
    assert codec.decode_many(["a", "b", "c", "d"], raws) == {"a": {"x": 1}, "c": when, "d": "s"}
    assert codec.decode_many([], []) == {}
    with pytest.raises(DecodeError, match="'bad'"):
        codec.decode_many(["ok", "bad"], [b"1", b"\x80garbage"])
