"""`ssl_keras.serving.cli`: tensorflow_model_server's flags, what it refuses, and the command serving gRPC alone."""

import subprocess
import sys

import pytest

from serving_fuzz import free_port
from serving_helpers import REPO, exported


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported(tmp_path_factory)


def test_server_refuses_a_missing_model(tmp_path):
    from ssl_keras.serving import cli

    (tmp_path / "empty").mkdir()
    assert cli.main(["--model-base-path", str(tmp_path / "empty")]) == 2


def test_binds_to_loopback_by_default():
    from ssl_keras.serving import cli, core

    args = cli.build_parser().parse_args([])
    assert (args.host, args.port, args.rest_api_port, args.model_name) == ("127.0.0.1", 8500, 8501, "dog_breeds")
    assert args.max_body_bytes == core.LIMITS.max_body_bytes
    assert (args.header_timeout_seconds, args.rest_api_timeout_in_ms) == (10, 30_000)


def test_takes_tf_serving_flags_and_the_hyphenated_aliases():
    """TF Serving's meaning wins: --port is gRPC; --rest_api_port is REST; underscores and hyphens both work."""
    from ssl_keras.serving import cli

    tf_serving = cli.build_parser().parse_args(["--port=9000", "--rest_api_port=9001", "--model_name=cats",
                                                "--model_base_path=/m", "--rest_api_timeout_in_ms=500",
                                                "--file_system_poll_wait_seconds=5"])
    hyphens = cli.build_parser().parse_args(["--port", "9000", "--rest-api-port", "9001", "--model-name", "cats",
                                             "--model-base-path", "/m", "--rest_api_timeout_in_ms", "500",
                                             "--poll-seconds", "5"])
    assert vars(tf_serving) == vars(hyphens)
    assert (tf_serving.port, tf_serving.rest_api_port, tf_serving.model_base_path) == (9000, 9001, "/m")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--rest", "9001"])  # no abbreviations: TF Serving has none


@pytest.mark.parametrize("flags, words", [
    (["--port", "0", "--rest_api_port", "0"], "nothing to serve"),
    (["--port", "8501", "--rest_api_port", "8501"], "Expected two ports"),
    (["--port", "70000"], "--port must be 0..65535"),
    (["--max-values", "0"], "--max-values must be > 0"),
    (["--rest_api_timeout_in_ms", "-1"], "--rest_api_timeout_in_ms must be > 0"),
])
def test_refuses_bad_flags(flags, words, capsys, tmp_path):
    from ssl_keras.serving import cli

    assert cli.main(flags + ["--model_base_path", str(tmp_path)]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.slow
def test_the_command_serves_grpc_alone_like_tensorflow_model_server(model):
    """`--port` is gRPC (TF Serving's meaning), `--rest_api_port 0` turns REST off; SIGTERM ends it cleanly."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ssl_keras.serve", f"--port={port}", "--rest_api_port=0",
                             "--model_name=dog_breeds", f"--model_base_path={model['base_path']}"],
                            cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=120)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "dog_breeds"
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=60)
        assert response.model_version_status[0].version == 1
        channel.close()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert f"gRPC on 127.0.0.1:{port}" in out and "REST" not in out
