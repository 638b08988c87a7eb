"""JSON request bodies with bounds: nesting depth and value count checked before anything is parsed, and
long arrays of numbers (photos as pixels) read by numpy instead of into Python lists.

`json.loads` of a 30 MB array of pixels builds millions of Python floats and lists (tens of bytes a
number) and recurses once per level of nesting (a body of 100,000 "[" raised RecursionError). Here
the raw bytes are scanned first, a MiB at a time: string contents are blanked out, brackets give the
depth, separators the number of values. Then each long run of bytes that can only be an array of
numbers is read by `read_numbers` into a float64 array and replaced by a placeholder string, and
`json.loads` reads what is left, which is small.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np

from ssl_keras.serving.core import short

NUMERIC_ARRAY_BYTES = 16 * 2**10  # JSON arrays of numbers at least this long are read by numpy, not json
PIECE = 2**20  # bytes scanned at a time: numpy's temporaries stay a few MiB whatever the body's size
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _table(values: dict, default: int = 0) -> bytes:
    """A bytes.translate table (numpy's lookups would copy their indices as 8-byte integers)."""
    table = bytearray([default] * 256)
    for chars, value in values.items():
        for byte in chars:
            table[byte] = value
    return bytes(table)


_STEP = _table({b"[{": 1, b"]}": 255})  # int8: +1 opens, -1 closes
_SEPARATOR = _table({b",:[{": 1})  # one more JSON value (roughly; arrays and objects count one)
# Bytes of an array of numbers: 0 digit, 1 '.', 2 'e', 3 '+', 4 '-', 5 '[', 6 ']', 7 ',', 8 space, 9 other.
_CLASS = _table({b"0123456789": 0, b".": 1, b"eE": 2, b"+": 3, b"-": 4, b"[": 5, b"]": 6, b",": 7, b" \t\r\n": 8}, 9)
_NUMERIC = _table({bytes(c for c in range(256) if _CLASS[c] <= 8): 1})
_STARTS = _table({bytes([4, 5, 7]): 1})  # classes after which a number starts
# The classes that may follow each class in an array of numbers (as JSON's grammar has it, spaces aside).
_FOLLOWS = {0: (0, 1, 2, 6, 7), 1: (0,), 2: (0, 3, 4), 3: (0,), 4: (0,), 5: (0, 4, 5), 6: (6, 7), 7: (0, 4, 5)}
_BAD_PAIR = _table({bytes(8 * a + b for a in range(8) for b in range(8) if b not in _FOLLOWS[a]): 1})
_NO_BRACKETS = bytes.maketrans(b"[]", b"  ")


def _blank(match) -> bytes:
    """A JSON string with its inside zeroed: the same length, so that positions in the body stay."""
    return b'"' + bytes(len(match[0]) - 2) + b'"'


def read_numbers(text: bytes) -> np.ndarray:
    """A JSON array of numbers, nested to any depth, as a float64 array of its shape, without Python lists.

    Raises:
        ValueError: naming what is wrong, when `text` is not a rectangular array of JSON numbers
            (ragged or empty lists, a missing or extra comma, a malformed number).
    """
    kinds, carry = [], b""  # '[', ']' and ',' in order; the last two non-space bytes of the previous piece
    for start in range(0, len(text), PIECE):
        piece = carry + text[start:start + PIECE]
        classes = np.frombuffer(piece.translate(_CLASS), np.int8)
        solid = classes != 8
        tokens, chars = classes[solid], np.frombuffer(piece, np.uint8)[solid]
        if not start and (not len(tokens) or tokens[0] != 5):
            raise ValueError("expected '['")
        bad = np.append(tokens[:-1] > 7, tokens[-1:] > 7)  # a letter, quote, brace...
        bad[:-1] |= np.frombuffer((tokens[:-1] * 8 + tokens[1:]).tobytes().translate(_BAD_PAIR), np.bool_)
        bad[1:-1] |= ((chars[1:-1] == ord("0")) & (tokens[2:] == 0)  # a leading zero, as in 01
                      & np.frombuffer(tokens[:-2].tobytes().translate(_STARTS), np.bool_))
        if bad.any():
            at = max(0, start - len(carry) + int(np.flatnonzero(solid)[np.argmax(bad)]))
            raise ValueError(f"unexpected {text[at:at + 12].decode('ascii', 'replace')!r} at byte {at}")
        new = tokens[len(carry):]
        kinds.append(new[new >= 5])
        carry = chars[-2:].tobytes()
    if not carry or carry[-1:] != b"]":
        raise ValueError("expected ']' at the end")
    kinds = np.concatenate(kinds)
    depth = np.cumsum((kinds == 5).view(np.int8) - (kinds == 6).view(np.int8), dtype=np.int16)
    if depth[-1] != 0 or (depth[:-1] <= 0).any():
        raise ValueError("the brackets do not match")
    shape, lists = [], 1
    for level in range(1, int(depth.max()) + 1):
        opens = np.flatnonzero((kinds == 5) & (depth == level))
        commas = np.flatnonzero((kinds == 7) & (depth == level))
        children = np.bincount(np.searchsorted(opens, commas) - 1, minlength=len(opens)) + 1
        if len(opens) != lists or (children != children[0]).any():
            raise ValueError(f"lists at depth {level} differ in length")
        shape.append(int(children[0]))
        lists *= shape[-1]
    del kinds, depth, opens, commas, children
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy only warns when a number does not parse
        try:
            values = np.fromstring(text.translate(_NO_BRACKETS), dtype=np.float64, sep=",")
        except DeprecationWarning:
            raise ValueError("a number does not parse") from None
    if values.size != lists:
        raise ValueError("lists differ in depth")
    return values.reshape(shape)


def _array_end(skeleton: bytes, begin: int, end: int) -> int | None:
    """The index after the "]" that closes the "[" at `begin`, if it comes before `end`."""
    depth = 0
    for start in range(begin, end, PIECE):
        steps = np.cumsum(np.frombuffer(skeleton[start:min(end, start + PIECE)].translate(_STEP), np.int8),
                          dtype=np.int32) + depth
        closed = np.flatnonzero(steps == 0)
        if len(closed):
            return start + int(closed[0]) + 1
        depth = int(steps[-1])
    return None


def _cut_numeric_arrays(raw: bytes, skeleton: bytes) -> tuple[bytes, dict]:
    """`raw` with each long array of numbers replaced by a placeholder string, and {placeholder: array}.

    `skeleton` is `raw` with the insides of strings zeroed. An array of numbers is looked for at the
    first "[" of each long run of bytes that can make one (digits, signs, brackets, commas, spaces).
    """
    numeric = np.frombuffer(skeleton.translate(_NUMERIC), np.bool_)
    bounds = np.concatenate(([0], np.flatnonzero(numeric[1:] != numeric[:-1]) + 1, [len(numeric)]))
    long_runs = numeric[bounds[:-1]] & (np.diff(bounds) >= NUMERIC_ARRAY_BYTES)
    spans = []
    for start, end in zip(bounds[:-1][long_runs].tolist(), bounds[1:][long_runs].tolist()):
        begin = skeleton.find(b"[", start, end)
        stop = _array_end(skeleton, begin, end) if begin >= 0 else None
        if stop is not None and stop - begin >= NUMERIC_ARRAY_BYTES:
            spans.append((begin, stop))
    del numeric, bounds, long_runs
    pieces, arrays, done = [], {}, 0
    for begin, stop in spans:
        try:
            array = read_numbers(raw[begin:stop])
        except ValueError as e:
            raise ValueError(f"The array of numbers at byte {begin} of the request body is not a "
                             f"rectangular array of JSON numbers ({e}).") from None
        key = f"\x00numbers:{len(arrays)}"
        pieces += [raw[done:begin], json.dumps(key).encode()]
        arrays[key], done = array, stop
    return b"".join(pieces + [raw[done:]]), arrays


def _put_back(value, arrays: dict):
    """`value` with the placeholders of `_cut_numeric_arrays` replaced by their arrays (lists changed in place)."""
    if isinstance(value, str):
        return arrays.get(value, value)
    if isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _put_back(item, arrays)
    elif isinstance(value, dict):
        for key, item in value.items():
            value[key] = _put_back(item, arrays)
    return value


def loads(raw: bytes, max_depth: int, max_values: int):
    """The JSON value in `raw`, its long arrays of numbers as float64 arrays.

    Raises:
        ValueError: with a message for the client, when `raw` nests arrays and objects deeper than
            `max_depth`, holds more than about `max_values` values (numbers, strings, arrays and
            objects each count one), is not JSON, or has a long array of numbers that is not
            rectangular.
    """
    skeleton = _JSON_STRING.sub(_blank, raw)
    depth, deepest, values = 0, 0, 1
    for start in range(0, len(skeleton), PIECE):
        piece = skeleton[start:start + PIECE]
        steps = np.cumsum(np.frombuffer(piece.translate(_STEP), np.int8), dtype=np.int32)
        if len(steps):
            deepest = max(deepest, depth + int(steps.max()))
            depth += int(steps[-1])
        values += int(np.count_nonzero(np.frombuffer(piece.translate(_SEPARATOR), np.bool_)))
    if deepest > max_depth:
        raise ValueError(f"The request body nests arrays and objects {deepest} deep; the limit is {max_depth} "
                         "({\"instances\": [[[[r, g, b]]]]} is 5).")
    if values > max_values:
        raise ValueError(f"The request body holds about {values:,} JSON values; the limit is {max_values:,}. "
                         "Send fewer or smaller photos, or encoded photos as {\"b64\": ...} to the "
                         "serving_default signature.")
    raw, arrays = _cut_numeric_arrays(raw, skeleton) if len(raw) >= NUMERIC_ARRAY_BYTES else (raw, {})
    del skeleton
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, an int of over 4300 digits
        raise ValueError(f"Malformed JSON in the request body: {short(str(e), 200)}. Expected a JSON object such "
                         "as {\"instances\": [...]}.") from None
    return _put_back(body, arrays) if arrays else body
