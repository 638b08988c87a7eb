"""`ssl_keras.serving.json_tensor`: a predict body read with bounds, and JSON values to arrays of the signature's
dtype (numbers that do not fit refused), called directly."""

import json

import numpy as np
import pytest


def test_json_depth_and_value_count_are_refused_before_parsing():
    """Deep nesting got a 500 (RecursionError) before; now a 400 naming the depth, from a byte scan."""
    from ssl_keras.serving import core, json_tensor

    for deep in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"[" * 33):
        with pytest.raises(core.RequestError, match="nests arrays and objects") as e:
            json_tensor.parse_json(deep)
        assert e.value.status == 400
    assert json_tensor.parse_json(b'{"a": "' + b"[" * 40 + b'"}') == {"a": "[" * 40}  # inside a string: not nesting
    limits = core.Limits(max_values=100)
    assert json_tensor.parse_json(json.dumps({"instances": [0] * 90}).encode(), limits)["instances"] == [0] * 90
    with pytest.raises(core.RequestError, match="holds about 113 JSON values; the limit is 100"):
        json_tensor.parse_json(json.dumps({"instances": [0] * 110}).encode(), limits)
    for junk in (b"1" * 5000, b'{"a": ' + b"1" * 5000 + b"}", b"\xff", b"[1, 2"):  # 4300-digit ints: a ValueError
        with pytest.raises(core.RequestError, match="Malformed JSON"):
            json_tensor.parse_json(junk)


def test_long_arrays_of_numbers_in_a_body_are_read_by_numpy():
    """A body's arrays past NUMERIC_ARRAY_BYTES come back as arrays (strings that look like arrays stay strings);
    a ragged one is a 400."""
    from ssl_keras.serving import bounded_json, core, json_tensor

    body = {"signature_name": "predict_pixels", "instances": (np.arange(2 * 40 * 40 * 3) % 256).reshape(2, 40, 40, 3)
            .astype(float).tolist(), "note": "[1, 2, 3]"}
    raw = json.dumps(body).encode()
    assert len(raw) > bounded_json.NUMERIC_ARRAY_BYTES
    parsed = json_tensor.parse_json(raw)
    assert isinstance(parsed["instances"], np.ndarray) and parsed["instances"].shape == (2, 40, 40, 3)
    assert parsed["note"] == "[1, 2, 3]" and np.array_equal(parsed["instances"], body["instances"])
    ragged = raw.replace(b"[0.0, 1.0, 2.0]", b"[0.0, 1.0]", 1)
    with pytest.raises(core.RequestError, match="not a rectangular array of JSON numbers"):
        json_tensor.parse_json(ragged)


def test_numbers_that_do_not_fit_the_dtype_are_refused():
    import tensorflow as tf

    from ssl_keras.serving import core, json_tensor

    ints = tf.TensorSpec([None], tf.int32)
    assert json_tensor.to_array([1, -2], ints, "n").tolist() == [1, -2]
    assert json_tensor.to_array(np.array([3.0, 4.0]), ints, "n").tolist() == [3, 4]  # read by numpy: whole numbers
    for value, words in (([2**40], "out of the range of int32"), ([10**30], "too large"), ([1.5], "whole numbers"),
                         (np.array([3e9]), "out of the range"), (["7"], "expected numbers, not strings"),
                         ([None], "cannot be read"), ([[1], [2, 3]], "rectangular")):
        with pytest.raises(core.RequestError, match=words):
            json_tensor.to_array(value, ints, "n")
    floats = tf.TensorSpec([None, 3], tf.float32)
    for value in ([[float("nan"), 1, 2]], [[float("inf"), 1, 2]], [[1e39, 1, 2]], [[10**40, 1, 2]],
                  np.array([[1e300, 1, 2]])):
        with pytest.raises(core.RequestError, match="NaN or infinite"):
            json_tensor.to_array(value, floats, "pixels")
    with pytest.raises(core.RequestError, match="cannot be read"):
        json_tensor.to_array([[10**400, 1, 2]], floats, "pixels")  # too large even for a float64
    with pytest.raises(core.RequestError, match="expected numbers, not strings"):
        json_tensor.to_array([["1", "2", "3"]], floats, "pixels")
    assert json_tensor.to_array([[1, 2.5, 10**20]], floats, "pixels").dtype == np.float32
