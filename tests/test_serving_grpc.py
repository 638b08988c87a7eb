"""TF Serving's gRPC API (`ssl_keras.serving.grpc_service`), called with TF Serving's own Python client.

The client is the `tensorflow-serving-api` package as a TF Serving user has it: PredictionServiceStub,
PredictRequest, tf.make_tensor_proto. Over the real test photos, gRPC, REST (served from the same model
store) and the SavedModel called directly give identical probabilities; unknown models and versions are
NOT_FOUND, every other client mistake INVALID_ARGUMENT, never UNKNOWN or INTERNAL.
"""

import base64
import json
import os
import shutil
import urllib.request

import numpy as np
import pytest

from serving_fuzz import png_declaring, tensor_proto
from serving_helpers import MIN_PHOTOS, assert_same_predictions, decode, exported, keras_probabilities, rest_server

LIMITS = dict(max_body_bytes=4 * 2**20, max_values=2**20)  # small, so that "too big" cases stay cheap


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported(tmp_path_factory)


@pytest.fixture(scope="module")
def served(model):
    """gRPC and REST, in this process, over one ModelStore: {"stub", "status_stub", "channel", "rest", "store"}."""
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    from ssl_keras.serving import core, grpc_service, rest

    limits = core.Limits(**LIMITS)
    store = core.ModelStore(model["base_path"], "dog_breeds")
    grpc_server = grpc_service.start(store, "127.0.0.1", 0, limits)
    app = rest.create_app(store=store, limits=limits, poll_seconds=0)
    with rest_server(app=app) as rest:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}")
        yield {"stub": prediction_service_pb2_grpc.PredictionServiceStub(channel), "channel": channel, "rest": rest,
               "status_stub": model_service_pb2_grpc.ModelServiceStub(channel), "store": store, "app": app}
        channel.close()
        grpc_server.stop(0)


def predict_request(inputs: dict, name="dog_breeds", signature="", version=None, label=None, output_filter=()):
    """A PredictRequest as a TF Serving client builds one."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.output_filter.extend(output_filter)
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(value if hasattr(value, "tensor_shape") else tf.make_tensor_proto(value))
    return request


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def code_of(call, *args):
    """(status code name, details) of a gRPC call expected to fail."""
    import grpc

    with pytest.raises(grpc.RpcError) as e:
        call(*args, timeout=60)
    return e.value.code().name, e.value.details()


@pytest.mark.slow
def test_grpc_rest_and_the_saved_model_agree_on_the_real_photos(served, model):
    """60 real photos, in batches of 6: gRPC, REST and the SavedModel called here give identical numbers."""
    import tensorflow as tf

    photos, classes = model["photos"], model["classes"]
    assert len(photos) >= MIN_PHOTOS
    signature = tf.saved_model.load(os.path.join(model["base_path"], "1")).signatures["serving_default"]
    grpc_probs, rest_probs, direct, grpc_top, rest_top = [], [], [], [], []
    for i in range(0, len(photos), 6):
        batch = [read(p) for p in photos[i:i + 6]]
        response = served["stub"].Predict(predict_request({"image_bytes": batch}), timeout=60)
        assert response.model_spec.name == "dog_breeds" and response.model_spec.version.value == 1
        assert response.model_spec.signature_name == "serving_default"
        assert set(response.outputs) == {"probabilities", "top_k_classes", "top_k_probabilities"}
        grpc_probs.append(tf.make_ndarray(response.outputs["probabilities"]))
        grpc_top += [[c.decode() for c in row] for row in tf.make_ndarray(response.outputs["top_k_classes"])]
        body = json.dumps({"instances": [{"b64": base64.b64encode(b).decode()} for b in batch]}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{served['rest']}/dog_breeds:predict", data=body)) as r:
            rows = json.loads(r.read())["predictions"]
        rest_probs.append(np.asarray([row["probabilities"] for row in rows], np.float32))
        rest_top += [row["top_k_classes"] for row in rows]
        direct.append(signature(image_bytes=tf.constant(batch))["probabilities"].numpy())
    grpc_probs, rest_probs, direct = map(np.concatenate, (grpc_probs, rest_probs, direct))
    assert grpc_probs.dtype == np.float32 and grpc_probs.shape == (len(photos), len(classes))
    np.testing.assert_array_equal(grpc_probs, direct)  # the same SavedModel, the same batches: the same bits
    np.testing.assert_array_equal(rest_probs, direct)
    assert grpc_top == rest_top
    assert [t[0] for t in grpc_top] == [classes[i] for i in direct.argmax(1)]
    assert_same_predictions(keras_probabilities(model), grpc_probs, "gRPC against Keras")


@pytest.mark.slow
def test_pixel_signature_and_output_filter(served, model):
    import tensorflow as tf

    pixels = decode(model["photos"][0])[None]
    direct = tf.saved_model.load(os.path.join(model["base_path"], "1")).signatures["predict_pixels"](
        pixels=tf.constant(pixels))
    response = served["stub"].Predict(predict_request({"pixels": pixels}, signature="predict_pixels",
                                                      output_filter=["probabilities"]), timeout=60)
    assert list(response.outputs) == ["probabilities"]
    assert response.model_spec.signature_name == "predict_pixels"
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["probabilities"]), direct["probabilities"].numpy())
    versioned = served["stub"].Predict(predict_request({"image_bytes": [read(model["photos"][0])]}, version=1),
                                       timeout=60)
    assert versioned.model_spec.version.value == 1


@pytest.mark.slow
def test_metadata_is_a_signature_def_map_in_an_any(served, model):
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "dog_breeds"
    request.metadata_field.append("signature_def")
    response = served["stub"].GetModelMetadata(request, timeout=60)
    assert response.model_spec.name == "dog_breeds" and response.model_spec.version.value == 1
    assert list(response.metadata) == ["signature_def"]
    assert response.metadata["signature_def"].TypeName() == "tensorflow.serving.SignatureDefMap"
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(read(os.path.join(model["base_path"], "1", "saved_model.pb")))
    assert dict(signatures.signature_def) == dict(saved.meta_graphs[0].signature_def)
    default = signatures.signature_def["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert default.inputs["image_bytes"].dtype == 7  # DT_STRING
    assert set(default.outputs) == {"probabilities", "top_k_classes", "top_k_probabilities"}


@pytest.mark.slow
def test_model_status(served):
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "dog_breeds"
    response = served["status_stub"].GetModelStatus(request, timeout=60)
    assert len(response.model_version_status) == 1
    status = response.model_version_status[0]
    assert (status.version, status.state, status.status.error_code, status.status.error_message) == (
        1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0, "")
    request.model_spec.version.value = 1
    assert served["status_stub"].GetModelStatus(request, timeout=60) == response


@pytest.mark.slow
@pytest.mark.parametrize("spec, words", [
    (dict(name="cats"), "Servable not found for request: Latest(cats)"),
    (dict(name=""), "Servable not found for request: Latest()"),
    (dict(version=7), "Specific(dog_breeds, 7)"),
    (dict(version=0), "Specific(dog_breeds, 0)"),
    (dict(version=-1), "Specific(dog_breeds, -1)"),
])
def test_unknown_models_and_versions_are_not_found(served, spec, words):
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    predict = predict_request({"image_bytes": [b"x"]}, **spec)
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=predict.model_spec,
                                                              metadata_field=["signature_def"])
    status = get_model_status_pb2.GetModelStatusRequest(model_spec=predict.model_spec)
    for call, request in ((served["stub"].Predict, predict), (served["stub"].GetModelMetadata, metadata),
                          (served["status_stub"].GetModelStatus, status)):
        assert code_of(call, request) == ("NOT_FOUND", code_of(call, request)[1])
        assert words in code_of(call, request)[1]


PIXELS = "predict_pixels"


@pytest.mark.slow
@pytest.mark.parametrize("inputs, kwargs, words", [
    ({"photo": [b"x"]}, {}, "input tensor alias not found in signature: photo. Inputs expected to be in the set "
                            "{image_bytes}"),
    ({}, {}, "Missing input 'image_bytes'"),
    ({"image_bytes": [1.5]}, {}, "Input 'image_bytes' is DT_FLOAT; expected DT_STRING"),
    ({"image_bytes": [b"not a photo"]}, {}, "Unknown image file format"),
    ({"image_bytes": b"x"}, {}, "Input 'image_bytes' has shape (); expected shape (-1)"),
    ({"image_bytes": [[b"x"]]}, {}, "has shape (1, 1); expected shape (-1)"),
    ({"pixels": np.zeros((4, 4, 3), np.float32)}, {"signature": PIXELS}, "expected shape (-1, -1, -1, 3)"),
    ({"pixels": np.zeros((1, 4, 4, 2), np.float32)}, {"signature": PIXELS}, "has shape (1, 4, 4, 2)"),
    ({"pixels": np.full((1, 4, 4, 3), np.nan, np.float32)}, {"signature": PIXELS}, "NaN or infinite"),
    ({"pixels": np.full((1, 4, 4, 3), np.inf, np.float32)}, {"signature": PIXELS}, "NaN or infinite"),
    ({"pixels": np.zeros((1, 4, 4, 3))}, {"signature": PIXELS}, "is DT_DOUBLE; expected DT_FLOAT"),
    ({"pixels": tensor_proto(1, [1, 600, 600, 3], float_val=[1.0])}, {"signature": PIXELS},
     "has 1,080,000 values; the limit is 1,048,576"),
    ({"pixels": tensor_proto(1, [1, 2**40, 2**40, 3], float_val=[1.0])}, {"signature": PIXELS}, "values; the limit is"),
    ({"pixels": tensor_proto(1, [1, -4, 4, 3], float_val=[1.0])}, {"signature": PIXELS}, "has shape (1, -4, 4, 3)"),
    ({"pixels": tensor_proto(1, [1, 4, 4, 3], tensor_content=bytes(100))}, {"signature": PIXELS}, "do not fill shape"),
    ({"pixels": tensor_proto(1, [1, 2, 2, 3], float_val=[1.0] * 13)}, {"signature": PIXELS}, "do not fill shape"),
    ({"image_bytes": tensor_proto(7, [1], tensor_content=b"xy")}, {}, "do not fill shape"),
    ({"image_bytes": tensor_proto(999, [1], float_val=[1.0])}, {}, "is an unknown dtype (999)"),
    ({"image_bytes": [b"x"]}, {"signature": "nope"}, "\"nope\" not found in signature def"),
    ({"image_bytes": [b"x"]}, {"label": "stable"}, "Unrecognized servable version label: stable"),
    ({"image_bytes": [b"x"]}, {"output_filter": ["nope"]}, "output tensor alias not found in signature: nope"),
])
def test_malformed_requests_are_invalid_argument(served, inputs, kwargs, words):
    code, details = code_of(served["stub"].Predict, predict_request(inputs, **kwargs))
    assert code == "INVALID_ARGUMENT" and words in details, details


@pytest.mark.slow
def test_photos_declaring_too_many_pixels_are_invalid_argument(served):
    png = png_declaring(100_000, 100_000)
    code, details = code_of(served["stub"].Predict, predict_request({"image_bytes": [png]}))
    assert code == "INVALID_ARGUMENT" and "declare 10,000,000,000 pixels" in details


@pytest.mark.slow
def test_bytes_that_do_not_parse_and_odd_metadata_requests_are_invalid_argument(served):
    from tensorflow_serving.apis import get_model_metadata_pb2

    for method in ("/tensorflow.serving.PredictionService/Predict",
                   "/tensorflow.serving.PredictionService/GetModelMetadata",
                   "/tensorflow.serving.ModelService/GetModelStatus"):
        code, details = code_of(served["channel"].unary_unary(method), b"\xff\xff\xff\xff")
        assert code == "INVALID_ARGUMENT" and "does not parse as tensorflow.serving." in details
    for fields, words in (([], "must specify at least one metadata_field"), (["nope"], "Metadata field nope is not")):
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
        request.model_spec.name = "dog_breeds"
        assert code_of(served["stub"].GetModelMetadata, request)[0] == "INVALID_ARGUMENT"
        assert words in code_of(served["stub"].GetModelMetadata, request)[1]


@pytest.mark.slow
def test_oversized_messages_and_unserved_methods_get_codes_not_internal(served):
    too_big = predict_request({"pixels": np.zeros((1, 700, 700, 3), np.float32)}, signature=PIXELS)
    assert too_big.ByteSize() > LIMITS["max_body_bytes"]
    assert code_of(served["stub"].Predict, too_big)[0] == "RESOURCE_EXHAUSTED"
    from tensorflow_serving.apis import classification_pb2

    assert code_of(served["stub"].Classify, classification_pb2.ClassificationRequest())[0] == "UNIMPLEMENTED"
    assert code_of(served["channel"].unary_unary("/tensorflow.serving.Nope/Nope"), b"")[0] == "UNIMPLEMENTED"


@pytest.mark.slow
def test_an_internal_error_is_internal_without_details(served, monkeypatch):
    from ssl_keras.serving import grpc_service

    def broken(*args):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(grpc_service, "predict", broken)
    code, details = code_of(served["stub"].Predict, predict_request({"image_bytes": [b"x"]}))
    assert (code, details) == ("INTERNAL", "Internal error (RuntimeError); see the server log.")


@pytest.mark.slow
def test_rest_and_grpc_share_one_model_store(model, tmp_path):
    """A new version folder, once loaded, is what both APIs serve."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    from ssl_keras.serving import core, grpc_service, rest

    base = tmp_path / "dog_breeds"
    shutil.copytree(model["base_path"], base)
    store = core.ModelStore(str(base), "dog_breeds")
    grpc_server = grpc_service.start(store, "127.0.0.1", 0)
    try:
        with rest_server(app=rest.create_app(store=store, poll_seconds=0)) as rest:
            shutil.copytree(base / "1", tmp_path / "tmp-version")
            os.rename(tmp_path / "tmp-version", base / "2")
            store.refresh()
            stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}"))
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "dog_breeds"
            assert [s.version for s in stub.GetModelStatus(request, timeout=60).model_version_status] == [2]
            with urllib.request.urlopen(f"{rest}/dog_breeds") as r:
                assert json.loads(r.read())["model_version_status"][0]["version"] == "2"
    finally:
        grpc_server.stop(0)
