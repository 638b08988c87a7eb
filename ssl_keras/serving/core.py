"""What REST and gRPC share: limits, client errors, the model store, input checks, version parsing, memory.

TF Serving's `server_core` holds the served models for both of its APIs; `ModelStore` is that here:
the newest version folder under a base path, polled for a newer one, and a bound on how many
requests are parsed and run at once. Every client mistake is a `RequestError`, which REST answers
with its status and gRPC with NOT_FOUND (404) or INVALID_ARGUMENT. TensorFlow is imported only
when a model is loaded, so that the command line can set TensorFlow's options first.
"""

from __future__ import annotations

import ctypes
import dataclasses
import io
import logging
import os
import re
import threading
import warnings

import numpy as np

DEFAULT_SIGNATURE = "serving_default"
GRPC_PORT, REST_PORT = 8500, 8501  # TF Serving's (its Docker image's REST port)
LARGE_REQUEST_BYTES = 2**20  # after a request at least this big, freed memory is handed back to the OS
VERSION = re.compile(r"[0-9]{1,18}")  # ASCII digits only (str.isdigit() also takes '²' and '١'); fits int64
log = logging.getLogger("ssl_keras.serve")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may hold, over REST and gRPC alike.

    Attributes:
        max_body_bytes: REST bodies and gRPC messages; larger ones get 413 (gRPC: RESOURCE_EXHAUSTED).
        max_json_depth: nesting of arrays and objects in a REST body ({"instances": [[[[r, g, b]]]]} is 5).
        max_values: values in a request: over REST the JSON values of the body (numbers, strings,
            arrays and objects each count one, so a photo as pixels costs 4 a pixel and 2**22 is a
            1000 x 1000 photo), over gRPC the elements of the input tensors (3 a pixel). It bounds a
            request's memory: JSON that `json.loads` reads costs up to ~100 bytes a value.
        max_pixels: pixels of all the encoded photos of one request, as their headers declare them (a
            small file can decode to gigabytes).
        max_concurrent_predictions: requests parsed and run at the same time (REST and gRPC together);
            the others wait their turn.
    """

    max_body_bytes: int = 32 * 2**20
    max_json_depth: int = 32
    max_values: int = 2**22
    max_pixels: int = 50_000_000
    max_concurrent_predictions: int = 4


LIMITS = Limits()


class RequestError(Exception):
    """A client error: answered with `status` and `{"error": message}` (gRPC: NOT_FOUND for 404, else
    INVALID_ARGUMENT)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def short(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters for an error message (paths and names can be kilobytes long)."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _libc():
    """The C library if it is glibc (it has malloc_trim), else None."""
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def keep_large_blocks_out_of_the_heap() -> None:
    """Makes glibc map every block over 128 KiB on its own, so that freeing it returns it to the OS.

    By default glibc raises that threshold each time such a block is freed (up to 32 MiB), after
    which request bodies and parsed arrays land in the heap and stay there.
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD; setting it turns the raising off


def release_memory() -> None:
    """Hands the heap memory freed by a large request back to the OS (glibc keeps it otherwise)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _op_error_message(error) -> str:
    """The op's own words from a TensorFlow runtime error, without node names and stack notes."""
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>")
    lines = [line.strip() for line in (error.message or "").splitlines()
             if line.strip() and not line.startswith((" ", "\t")) and not line.startswith(noise)]
    return lines[-1] if lines else type(error).__name__


class Servable:
    """One loaded version: its signatures, and their definitions for the metadata APIs."""

    def __init__(self, path: str, version: int):
        import tensorflow as tf
        from google.protobuf import json_format
        from tensorflow.core.protobuf import saved_model_pb2

        self.version = version
        self.model = tf.saved_model.load(path)
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        self.signature_def_protos = dict(proto.meta_graphs[0].signature_def)
        self.signature_defs = {key: json_format.MessageToDict(sig, preserving_proto_field_name=True)
                               for key, sig in self.signature_def_protos.items()}

    def inputs(self, signature_name: str) -> dict:
        """{input name: tf.TensorSpec} of a signature."""
        return self.signature(signature_name).structured_input_signature[1]

    def signature(self, signature_name: str):
        """The concrete function of a signature; 400 when there is no such signature."""
        if signature_name not in self.model.signatures:
            raise RequestError(400, f"Serving signature name: \"{short(signature_name)}\" not found in "
                                    f"signature def. Expected one of {sorted(self.model.signatures)}.")
        return self.model.signatures[signature_name]

    def run(self, signature_name: str, arrays: dict) -> dict:
        """{output name: array} of a signature on checked inputs; 400 when the model's ops refuse them."""
        import tensorflow as tf

        try:
            outputs = self.signature(signature_name)(**{n: tf.constant(a) for n, a in arrays.items()})
            return {n: t.numpy() for n, t in outputs.items()}
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
            raise RequestError(400, f"Cannot run signature {signature_name!r} on this input: "
                                    f"{_op_error_message(e)}") from None


def parse_version(version: str | int | None) -> int | None:
    """A model version from a URL or a proto; 400 unless it is ASCII digits (at most 18 of them)."""
    if version is None or isinstance(version, int):
        return version
    if not VERSION.fullmatch(version):
        raise RequestError(400, f"Model version must be an integer of ASCII digits 0-9 (at most 18). "
                                f"Received: {short(version)!r}")
    return int(version)


class ModelStore:
    """The served versions of one model: the newest integer-named folder under `base_path`.

    REST and gRPC share it, and `slots` bounds how many requests are parsed and run at once.
    """

    def __init__(self, base_path: str, name: str, max_concurrent_predictions: int = LIMITS.max_concurrent_predictions):
        if not os.path.isdir(base_path):
            raise ValueError(f"Model base path {base_path!r} is not a folder. Expected the folder holding version "
                             "folders 1, 2, ... (e.g. export/saved_model/dog_breeds).")
        self.base_path, self.name = base_path, name
        self.servables: dict[int, Servable] = {}
        self.slots = threading.BoundedSemaphore(max_concurrent_predictions)
        self._lock = threading.Lock()
        if not self.refresh():
            raise ValueError(f"No version folder (1, 2, ...) with a saved_model.pb under {base_path!r}. "
                             "Run `python -m ssl_keras.run export` first.")

    def refresh(self) -> bool:
        """Loads the newest version if it is not loaded yet and unloads the older ones; True if one is served."""
        on_disk = [int(d) for d in os.listdir(self.base_path)
                   if VERSION.fullmatch(d) and os.path.exists(os.path.join(self.base_path, d, "saved_model.pb"))]
        if not on_disk:
            return bool(self.servables)
        newest = max(on_disk)
        if newest not in self.servables:
            log.info("Loading %s version %d from %s", self.name, newest, self.base_path)
            servable = Servable(os.path.join(self.base_path, str(newest)), newest)
            with self._lock:
                self.servables = {newest: servable}
        return True

    def start_polling(self, seconds: float) -> threading.Event:
        """Looks for a newer version every `seconds` in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()

        def poll():
            while not stop.wait(seconds):
                try:
                    self.refresh()
                except Exception:  # a half-copied version: try again at the next poll
                    log.exception("Could not load a new version from %s", self.base_path)

        if seconds > 0:
            threading.Thread(target=poll, name="poll-model-versions", daemon=True).start()
        return stop

    def get(self, name: str, version: str | int | None = None, label: str | None = None) -> Servable:
        """The servable a request names; 404 when the model or version is not served, 400 for a label."""
        version = parse_version(version)
        with self._lock:
            servables = dict(self.servables)
        request = f"Latest({short(name)})" if version is None else f"Specific({short(name)}, {version})"
        if name != self.name:
            raise RequestError(404, f"Servable not found for request: {request}. This server serves "
                                    f"model {self.name!r}.")
        if label is not None:  # like TF Serving without version labels in its config
            raise RequestError(400, f"Unrecognized servable version label: {short(label)}. No labels are "
                                    f"configured; name a version (served: {sorted(servables)}) or none.")
        if version is None:
            return servables[max(servables)]
        if version not in servables:
            raise RequestError(404, f"Servable not found for request: {request}. Served versions: "
                                    f"{sorted(servables)}.")
        return servables[version]


def check_input(name: str, array: np.ndarray, spec, limits: Limits) -> np.ndarray:
    """`array` if it fits the signature input `spec` and `limits`; 400 naming the input otherwise.

    Shared by REST and gRPC: the shape, non-finite numbers (NaN, +-Infinity, or a number too large
    for the dtype) and the pixels the encoded photos declare.
    """
    import tensorflow as tf

    expected = spec_text(spec)
    if not spec.shape.is_compatible_with(array.shape):
        raise RequestError(400, f"Input {name!r} has shape {tuple(array.shape)}; expected shape {expected} "
                                f"of {spec.dtype.name}.")
    if array.size > limits.max_values:
        raise RequestError(400, f"Input {name!r} has {array.size:,} values; the limit is {limits.max_values:,}.")
    if spec.dtype.is_floating and not np.isfinite(array).all():
        raise RequestError(400, f"Input {name!r} holds NaN or infinite values (or numbers too large for "
                                f"{spec.dtype.name}); expected finite numbers, pixels 0..255.")
    if spec.dtype == tf.string:
        pixels = 0
        for i, data in enumerate(array.ravel()):
            pixels += _declared_pixels(data)
            if pixels > limits.max_pixels:
                raise RequestError(400, f"Input {name!r}: the photos up to item {i} declare {pixels:,} pixels; "
                                        f"the limit is {limits.max_pixels:,} pixels a request.")
    return array


def spec_text(spec) -> str:
    """"(-1, -1, -1, 3)": a signature input's shape, -1 for any size."""
    return "(" + ", ".join("-1" if d is None else str(d) for d in spec.shape.as_list()) + ")"


def _declared_pixels(data: bytes) -> int:
    """Width x height from a photo's header; 0 when Pillow cannot read it (the model's decoder then says why)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit here is ours
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except Image.DecompressionBombError as e:  # over twice Pillow's own limit; its message has the size
        size = re.search(r"\((\d+) pixels\)", str(e))
        return int(size[1]) if size else 2**62
    except Exception:
        return 0
    return width * height
