"""`ssl_keras.serving.bounded_json`: long arrays of numbers read by numpy exactly as `json.loads` reads them."""

import json

import numpy as np
import pytest


def test_long_arrays_of_numbers_are_read_by_numpy_like_json():
    """Arrays past NUMERIC_ARRAY_BYTES skip Python lists; they read as json.loads would, or are refused.

    Seeded mutations (a byte inserted or deleted) of random arrays, read in 7-byte pieces so that every
    piece boundary is crossed: numpy's reading and json's agree on every one, or both refuse it.
    """
    import random

    from ssl_keras.serving import bounded_json

    rng, old_piece = random.Random(0), bounded_json.PIECE
    bounded_json.PIECE = 7
    try:
        for _ in range(2000):
            shape = (rng.randint(1, 3), rng.randint(1, 4), 3)
            array = np.asarray([rng.randint(-500, 500) / rng.choice([1, 4, 1000]) for _ in range(int(np.prod(shape)))])
            text = json.dumps(array.reshape(shape).tolist(), indent=rng.choice([None, 1])).encode()
            assert np.array_equal(bounded_json.read_numbers(text), array.reshape(shape))
            mutated = bytearray(text)
            at = rng.randrange(len(mutated))
            if rng.random() < 0.5:
                mutated[at:at] = rng.choice([b",", b"]", b"[", b" ", b"0", b"-", b".", b"e", b"+"])
            else:
                del mutated[at]
            try:
                expected = np.asarray(json.loads(bytes(mutated)), float)
                expected = expected if expected.size else None  # empty lists: refused on purpose
            except ValueError:
                expected = None
            try:
                got = bounded_json.read_numbers(bytes(mutated))
            except ValueError:
                got = None
            assert (got is None) == (expected is None), (bytes(mutated), expected, got)
            assert got is None or np.array_equal(got, expected)
    finally:
        bounded_json.PIECE = old_piece


def test_loads_bounds_depth_and_values_and_reads_long_arrays_into_numpy():
    """`loads` refuses before parsing (a ValueError for the client) and returns long arrays of numbers as arrays."""
    from ssl_keras.serving import bounded_json

    with pytest.raises(ValueError, match="nests arrays and objects 33 deep; the limit is 32"):
        bounded_json.loads(b"[" * 33 + b"]" * 33, max_depth=32, max_values=100)
    with pytest.raises(ValueError, match="holds about 11 JSON values; the limit is 10"):
        bounded_json.loads(json.dumps([0] * 10).encode(), max_depth=32, max_values=10)
    with pytest.raises(ValueError, match="Malformed JSON in the request body"):
        bounded_json.loads(b"[1, 2", max_depth=32, max_values=100)
    body = bounded_json.loads(json.dumps({"a": list(range(5000)), "b": "[1]"}).encode(), max_depth=32,
                              max_values=10**6)
    assert isinstance(body["a"], np.ndarray) and body["a"].dtype == np.float64
    assert np.array_equal(body["a"], np.arange(5000)) and body["b"] == "[1]"
