"""TF Serving's JSON for tensors: a REST predict body to checked arrays, and outputs back to JSON.

TF Serving's `util/json_tensor` reads the row format (`{"instances": [...]}`, one item per example)
and the column format (`{"inputs": ...}`), binary values as `{"b64": "..."}`, and writes
`predictions` or `outputs` the same way. The body is read by `bounded_json`, so it is bounded
before any Python object is built; each input is checked against its signature by `core.check_input`.
"""

from __future__ import annotations

import base64

import numpy as np

from ssl_keras.serving import bounded_json
from ssl_keras.serving.core import (DEFAULT_SIGNATURE, LIMITS, Limits, RequestError, Servable, check_input, short,
                                    spec_text)


def _decode_b64(value, where: str):
    """Replaces every `{"b64": ...}` in a JSON value by the bytes it encodes."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            if not isinstance(value["b64"], str):
                raise RequestError(400, f"{where}: a \"b64\" value must be a string. "
                                        f"Received: {short(repr(value['b64']))}")
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError as e:
                raise RequestError(400, f"{where}: invalid base64 data ({e}).") from None
        raise RequestError(400, f"{where}: unexpected object with keys {short(str(sorted(value)))}. Expected a "
                                "tensor value (number, string, list) or {\"b64\": ...}.")
    if isinstance(value, list):
        return [_decode_b64(v, where) for v in value]
    return value


def to_array(value, spec, name: str, limits: Limits = LIMITS) -> np.ndarray:
    """A JSON value as an array of the signature input `spec`; 400 when its type, shape or values do not fit."""
    import tensorflow as tf

    try:
        if spec.dtype == tf.string:
            array = np.asarray(_decode_b64(value, f"Input {name!r}"), dtype=object)
            if array.dtype != object or any(not isinstance(v, (str, bytes)) for v in array.ravel()):
                raise ValueError("expected strings or {\"b64\": ...}")
            array = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(array)
        else:
            array = _as_numbers(np.asarray(value), spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError, OverflowError) as e:
        items = "strings or {\"b64\": ...}" if spec.dtype == tf.string else "numbers"
        raise RequestError(400, f"Input {name!r} cannot be read as a {spec.dtype.name} tensor of shape "
                                f"{spec_text(spec)} ({short(str(e), 200)}). Expected {items} in nested lists "
                                "of equal lengths (rectangular).") from None
    return check_input(name, array, spec, limits)


def _as_numbers(array: np.ndarray, dtype) -> np.ndarray:
    """`array` (JSON numbers) as `dtype`; ValueError for strings, and for numbers a whole-number dtype cannot hold.

    Floats too large for a float dtype become infinite here; `check_input` refuses them.
    """
    dtype = np.dtype(dtype)
    if array.dtype.kind not in "biufO":
        raise ValueError(f"expected numbers, not {array.dtype.kind == 'U' and 'strings' or array.dtype}")
    if array.dtype == object:  # integers too large for int64, None, objects: numpy says which
        array = np.asarray(array.tolist(), dtype=np.float64 if dtype.kind == "f" else dtype)
    if dtype.kind in "iu" and array.dtype.kind == "f" and not (np.isfinite(array).all()
                                                              and (array == np.round(array)).all()):
        raise ValueError(f"expected whole numbers for {dtype.name}")
    if dtype.kind in "iu" and array.size and (array.min() < np.iinfo(dtype).min or array.max() > np.iinfo(dtype).max):
        raise ValueError(f"a number is out of the range of {dtype.name}, {np.iinfo(dtype).min}..{np.iinfo(dtype).max}")
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(dtype, copy=False)


def parse_json(raw: bytes, limits: Limits = LIMITS) -> dict:
    """A request body as a JSON object; 400 when it is not one, is nested too deep or holds too many values.

    Read by `bounded_json.loads`: bounded before any Python object is built, and photos as pixels
    read by numpy rather than into Python lists.
    """
    try:
        body = bounded_json.loads(raw, limits.max_json_depth, limits.max_values)
    except ValueError as e:
        raise RequestError(400, str(e)) from None
    if not isinstance(body, dict):
        raise RequestError(400, f"Request body must be a JSON object. Received a {type(body).__name__}.")
    return body


def parse_predict(body: dict, inputs: dict, limits: Limits = LIMITS) -> tuple[dict, bool]:
    """({input name: array}, row format?) from a predict request body.

    Row format (`instances`): a list, one item per example; with one input an
    item is its value (or `{name: value}`). Column format (`inputs`): the value
    of the only input, or `{name: value}`.
    """
    if ("instances" in body) == ("inputs" in body):
        raise RequestError(400, "Request must have exactly one of \"instances\" (row format) or \"inputs\" "
                                f"(column format). Received keys: {short(str(sorted(body)))}")
    names = sorted(inputs)
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, (list, np.ndarray)) or not len(rows):  # ndarray: a long array of numbers
            raise RequestError(400, "\"instances\" must be a non-empty list, one item per example.")
        named = isinstance(rows, list) and all(isinstance(r, dict) and set(r) != {"b64"} for r in rows)
        if len(names) > 1 and not named:
            raise RequestError(400, f"Each instance must be an object with keys {names}.")
        if named:
            for i, r in enumerate(rows):
                if set(r) != set(names):
                    raise RequestError(400, f"Instance {i} has keys {short(str(sorted(r)))}; expected {names}.")
            columns = {n: [r[n] for r in rows] for n in names}
        else:
            columns = {names[0]: rows}
        return {n: to_array(v, inputs[n], n, limits) for n, v in columns.items()}, True
    columns = body["inputs"]
    if not (isinstance(columns, dict) and set(columns) != {"b64"}):
        if len(names) > 1:
            raise RequestError(400, f"\"inputs\" must be an object with keys {names}.")
        columns = {names[0]: columns}
    if set(columns) != set(names):
        raise RequestError(400, f"\"inputs\" has keys {short(str(sorted(columns)))}; expected {names}.")
    return {n: to_array(v, inputs[n], n, limits) for n, v in columns.items()}, False


def _jsonable(name: str, array: np.ndarray):
    if array.dtype == object:
        if name.endswith("_bytes"):
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(array).tolist()
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist()
    return array.tolist()


def parse_request(servable: Servable, raw: bytes, limits: Limits = LIMITS) -> tuple[str, dict, bool]:
    """(signature name, {input name: array}, row format?) of a predict request body.

    The parsed JSON (Python lists, tens of bytes a value) is gone when this returns, before the
    model runs: objects that the run allocates and keeps would otherwise pin the memory it sat in.
    """
    body = parse_json(raw, limits)
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise RequestError(400, f"\"signature_name\" must be a string. Received a {type(signature_name).__name__}.")
    signature_name = signature_name or DEFAULT_SIGNATURE
    arrays, rows = parse_predict(body, servable.inputs(signature_name), limits)
    return signature_name, arrays, rows


def make_json(outputs: dict, rows: bool) -> dict:
    """The response body to a predict request: `predictions` (row format) or `outputs` (column format)."""
    if not rows:
        return {"outputs": {n: _jsonable(n, a) for n, a in outputs.items()}}
    if len(outputs) == 1:
        (n, a), = outputs.items()
        return {"predictions": _jsonable(n, a)}
    columns = {n: _jsonable(n, a) for n, a in outputs.items()}
    count = len(next(iter(columns.values())))
    return {"predictions": [{n: c[i] for n, c in columns.items()} for i in range(count)]}
