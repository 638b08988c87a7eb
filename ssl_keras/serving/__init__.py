"""A SavedModel base directory served like `tensorflow_model_server`: TF Serving's REST and gRPC APIs.

`python -m ssl_keras.serve` runs it (see `cli`). A client written for TF Serving works unchanged:

    REST  GET  /v1/models/<name>[/versions/<v>]            model status (HEAD: the same, no body)
          GET  /v1/models/<name>[/versions/<v>]/metadata   signatures
          POST /v1/models/<name>[/versions/<v>]:predict    {"instances": [...]} or {"inputs": ...}
    gRPC  tensorflow.serving.PredictionService/Predict, GetModelMetadata
          tensorflow.serving.ModelService/GetModelStatus

The modules follow TF Serving's `model_servers/` split, and import one way (down this list):

    cli            tensorflow_model_server's flags and `main` (TF Serving: main.cc, server.cc)
    rest           the Starlette app of the REST API (http_rest_api_handler)
    grpc_service   PredictionService and ModelService (prediction_service_impl, model_service_impl)
    json_tensor    a REST predict body to arrays, and outputs to JSON (util/json_tensor)
    deadline       the h11 protocol with header and body deadlines (REST only)
    bounded_json   JSON bodies read with bounds on depth and values, photos as pixels read by numpy
    core           limits, RequestError, the model store, input checks, version parsing, memory release
"""
