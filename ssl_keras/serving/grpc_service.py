"""TF Serving's gRPC API, on the protos of the `tensorflow-serving-api` package.

    tensorflow.serving.PredictionService/Predict            PredictRequest -> PredictResponse
    tensorflow.serving.PredictionService/GetModelMetadata   metadata_field "signature_def": a SignatureDefMap in an Any
    tensorflow.serving.ModelService/GetModelStatus          the served version, AVAILABLE

A client written for TF Serving works unchanged:

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel("localhost:8500"))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "dog_breeds"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([jpeg_bytes]))
    probabilities = tf.make_ndarray(stub.Predict(request, timeout=10).outputs["probabilities"])

It serves `core.ModelStore`, shared with the REST server, under the same `Limits`. An unknown model
or version is NOT_FOUND; any other client mistake (bytes that do not parse as the request, a wrong input name,
dtype or shape, a photo that does not decode, NaN pixels, too many values, a version label) is
INVALID_ARGUMENT, with a message naming the input and what was expected. A message over
`Limits.max_body_bytes` is RESOURCE_EXHAUSTED (gRPC's own check). Classify, Regress, MultiInference
and HandleReloadConfigRequest are UNIMPLEMENTED.
"""

from __future__ import annotations

import math
from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from ssl_keras.serving.core import (DEFAULT_SIGNATURE, LARGE_REQUEST_BYTES, LIMITS, Limits, ModelStore, RequestError,
                                    check_input, log, release_memory, short, spec_text)

CODES = {404: grpc.StatusCode.NOT_FOUND}  # every other RequestError is INVALID_ARGUMENT


def _dtype_name(enum: int) -> str:
    try:
        return types_pb2.DataType.Name(enum)
    except ValueError:
        return f"an unknown dtype ({enum})"


def tensor_to_array(proto, spec, name: str, limits: Limits = LIMITS):
    """A TensorProto as an array of the signature input `spec`; 400 (INVALID_ARGUMENT) when it does not fit.

    The dtype, the shape and the number of values are checked before any array is built, so a
    small proto that declares a huge shape costs nothing.
    """
    expected = spec_text(spec)
    if proto.dtype != spec.dtype.as_datatype_enum:
        raise RequestError(400, f"Input {name!r} is {_dtype_name(proto.dtype)}; expected "
                                f"{types_pb2.DataType.Name(spec.dtype.as_datatype_enum)}.")
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims) or not spec.shape.is_compatible_with(dims):
        shape = "unknown" if proto.tensor_shape.unknown_rank else short(str(tuple(dims)))
        raise RequestError(400, f"Input {name!r} has shape {shape}; expected shape {expected}.")
    if math.prod(dims) > limits.max_values:
        raise RequestError(400, f"Input {name!r} has {math.prod(dims):,} values; the limit is {limits.max_values:,}.")
    try:
        array = tf.make_ndarray(proto)
    except (ValueError, TypeError) as e:  # tensor_content or *_val that do not match the shape
        raise RequestError(400, f"Input {name!r}: its values do not fill shape {tuple(dims)} of "
                                f"{spec.dtype.name} ({short(str(e), 200)}).") from None
    return check_input(name, array, spec, limits)


def _servable(store: ModelStore, spec):
    choice = spec.WhichOneof("version_choice")
    return store.get(spec.name, spec.version.value if choice == "version" else None,
                     spec.version_label if choice == "version_label" else None)


def predict(store: ModelStore, request, limits: Limits = LIMITS):
    """The PredictResponse to a PredictRequest: `output_filter` honoured, outputs as TensorProtos."""
    servable = _servable(store, request.model_spec)
    signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    inputs = servable.inputs(signature_name)
    outputs_known = sorted(servable.signature_def_protos[signature_name].outputs)
    for given, known, what in ((request.inputs, inputs, "input"), (request.output_filter, outputs_known, "output")):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise RequestError(400, f"{what} tensor alias not found in signature: {short(unknown[0])}. "
                                    f"{what.capitalize()}s expected to be in the set {{{', '.join(sorted(known))}}}.")
    missing = sorted(set(inputs) - set(request.inputs))
    if missing:
        raise RequestError(400, f"Missing input {missing[0]!r}; signature {signature_name!r} expects "
                                f"{sorted(inputs)}.")
    with store.slots:
        try:
            arrays = {n: tensor_to_array(request.inputs[n], inputs[n], n, limits) for n in inputs}
            outputs = servable.run(signature_name, arrays)
        finally:
            if request.ByteSize() >= LARGE_REQUEST_BYTES:
                release_memory()
    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature_name
    for n in request.output_filter or outputs:
        response.outputs[n].CopyFrom(tf.make_tensor_proto(outputs[n]))
    return response


def get_model_metadata(store: ModelStore, request):
    """The GetModelMetadataResponse: the signature defs, a SignatureDefMap packed in an Any, as TF Serving."""
    servable = _servable(store, request.model_spec)
    fields = list(request.metadata_field)
    if not fields:
        raise RequestError(400, "GetModelMetadataRequest must specify at least one metadata_field. "
                                "Expected [\"signature_def\"].")
    for field in fields:
        if field != "signature_def":
            raise RequestError(400, f"Metadata field {short(field)} is not supported. Expected \"signature_def\".")
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_def_protos.items():
        signatures.signature_def[key].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = servable.version
    response.metadata["signature_def"].Pack(signatures)
    return response


def get_model_status(store: ModelStore, request):
    """The GetModelStatusResponse: the served version, AVAILABLE, error code OK."""
    servable = _servable(store, request.model_spec)
    response = get_model_status_pb2.GetModelStatusResponse()
    status = response.model_version_status.add()
    status.version = servable.version
    status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    return response


def _method(behaviour, request_type, response_type):
    """A unary handler whose client mistakes become status codes (gRPC would say INTERNAL or UNKNOWN)."""

    def parse(data: bytes):
        try:
            return request_type.FromString(data)
        except Exception as e:  # DecodeError and kin: the client's bytes, not a server fault
            return e

    def handle(request, context):
        if isinstance(request, Exception):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"The request does not parse as {request_type.DESCRIPTOR.full_name} ({request}).")
        try:
            return behaviour(request)
        except RequestError as e:
            code, message = CODES.get(e.status, grpc.StatusCode.INVALID_ARGUMENT), str(e)
        except Exception as e:
            log.exception("Internal error in %s", request_type.DESCRIPTOR.name)
            code, message = grpc.StatusCode.INTERNAL, f"Internal error ({type(e).__name__}); see the server log."
        context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=parse,
                                               response_serializer=response_type.SerializeToString)


def start(store: ModelStore, host: str, port: int, limits: Limits = LIMITS) -> grpc.Server:
    """Starts the gRPC server on `host:port` (0: a free port, see `server.port`); RuntimeError if it cannot bind."""
    workers = max(8, 2 * limits.max_concurrent_predictions)
    server = grpc.server(futures.ThreadPoolExecutor(workers, thread_name_prefix="grpc"),
                         options=[("grpc.max_receive_message_length", limits.max_body_bytes),
                                  ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
            "Predict": _method(lambda r: predict(store, r, limits), predict_pb2.PredictRequest,
                               predict_pb2.PredictResponse),
            "GetModelMetadata": _method(lambda r: get_model_metadata(store, r),
                                        get_model_metadata_pb2.GetModelMetadataRequest,
                                        get_model_metadata_pb2.GetModelMetadataResponse),
        }),
        grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
            "GetModelStatus": _method(lambda r: get_model_status(store, r),
                                      get_model_status_pb2.GetModelStatusRequest,
                                      get_model_status_pb2.GetModelStatusResponse),
        }),
    ])
    try:
        server.port = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as e:
        raise RuntimeError(f"Cannot serve gRPC on {host}:{port} ({e}). Is the port in use? Pick another with "
                           "--port.") from None
    if not server.port:  # older grpcio: 0 instead of an exception
        raise RuntimeError(f"Cannot serve gRPC on {host}:{port}. Is the port in use? Pick another with --port.")
    server.start()
    return server
