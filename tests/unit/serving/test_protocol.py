"""Open Inference Protocol (KServe V2) requests and responses, JSON and binary tensors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raylift.serving.protocol import (
    RequestError,
    TensorSpec,
    decode_inputs,
    encode_response,
    split_body,
    wants_binary_outputs,
)

PIXELS = TensorSpec("pixels", "FP32", (-1, 64))


def decode(body: bytes, headers: dict[str, str] | None = None, max_rows: int = 16) -> np.ndarray:
    request, binary = split_body(body, headers or {})
    return decode_inputs(request, binary, [PIXELS], max_rows=max_rows)["pixels"]


def json_body(data: object, shape: list[int], datatype: str = "FP32", **extra: object) -> bytes:
    tensor = {"name": "pixels", "shape": shape, "datatype": datatype, "data": data, **extra}
    return json.dumps({"inputs": [tensor]}).encode()


def binary_body(array: np.ndarray, datatype: str) -> tuple[bytes, dict[str, str]]:
    """What tritonclient sends with binary_data=True."""
    raw = array.tobytes()
    header = {
        "inputs": [
            {
                "name": "pixels",
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
    }
    head = json.dumps(header).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def test_json_flat_and_nested_data_decode_to_the_same_rows() -> None:
    rows = np.arange(128, dtype=np.float32).reshape(2, 64) % 17
    flat = decode(json_body(rows.reshape(-1).tolist(), [2, 64]))
    nested = decode(json_body(rows.tolist(), [2, 64], datatype="INT64"))
    assert flat.dtype == np.float32 and flat.shape == (2, 64)
    assert np.array_equal(flat, rows) and np.array_equal(nested, rows)


@pytest.mark.parametrize(("datatype", "dtype"), [("FP32", "<f4"), ("UINT8", "<u1")])
def test_binary_tensor_extension(datatype: str, dtype: str) -> None:
    rows = (np.arange(192).reshape(3, 64) % 17).astype(dtype)
    body, headers = binary_body(rows, datatype)
    decoded = decode(body, headers)
    assert decoded.dtype == np.float32 and np.array_equal(decoded, rows.astype(np.float32))
    request, _ = split_body(body, headers)
    assert wants_binary_outputs(request)


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"{not json", {}, 400, "malformed JSON"),
        (b"[1, 2]", {}, 400, "JSON object"),
        (b'{"inputs": []}', {}, 400, "non-empty list"),
        (json_body([0.0] * 64, [1, 63]), {}, 400, "shape [1, 63] given, [N, 64] expected"),
        (json_body([0.0] * 60, [1, 64]), {}, 400, "60 values for a shape of 64"),
        (json_body(["a"] * 64, [1, 64]), {}, 400, "FP32 data must be numbers"),
        (json_body([True] * 64, [1, 64], datatype="BOOL"), {}, 400, "BOOL given"),
        (json_body([0.0] * 64, [1, 64], datatype="BYTES"), {}, 400, "datatype 'BYTES'"),
        (b'{"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", '
         b'"data": [NaN' + b", 0" * 63 + b"]}]}", {}, 400, "NaN or infinity"),
        (json_body([1e39] * 64, [1, 64]), {}, 400, "NaN or infinity"),
        (json_body([0] * 64 * 17, [17, 64]), {}, 413, "17 rows in one request; at most 16"),
        (json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "FP32",
                                 "data": [1]}]}).encode(), {}, 400, "unknown input 'image'"),
        (json_body(None, [1, 64]), {}, 400, "no 'data'"),
        (b"{}", {"Inference-Header-Content-Length": "99"}, 400, "outside the body"),
        (b"{}", {"Inference-Header-Content-Length": "x"}, 400, "not an integer"),
    ],
)  # fmt: skip
def test_bad_requests_are_4xx_and_say_why(
    body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    with pytest.raises(RequestError) as caught:
        decode(body, headers)
    assert caught.value.status == status and message in str(caught.value), str(caught.value)
    assert caught.value.body() == {"error": str(caught.value)}


def test_binary_sizes_must_match_the_shape() -> None:
    rows = np.zeros((2, 64), dtype="<f4")
    body, headers = binary_body(rows, "FP32")
    with pytest.raises(RequestError, match="needs 512 bytes, binary_data_size says 256"):
        decode(body.replace(b'"binary_data_size": 512', b'"binary_data_size": 256'), headers)
    with pytest.raises(RequestError, match="belong to no input"):
        decode(body + b"\0\0\0\0", headers)


def test_responses_in_json_and_binary() -> None:
    probabilities = np.full((2, 10), 0.1, dtype=np.float32)
    labels = np.array([3, 7], dtype=np.int64)
    outputs = {"probabilities": ("FP32", probabilities), "label": ("INT64", labels)}
    body, headers = encode_response(
        model_name="digits", model_version="1", request_id="r1", outputs=outputs, binary=False
    )
    parsed = json.loads(body)
    assert headers == {} and parsed["id"] == "r1" and parsed["model_version"] == "1"
    assert parsed["outputs"][1] == {"name": "label", "datatype": "INT64", "shape": [2],
                                    "data": [3, 7]}  # fmt: skip
    body, headers = encode_response(
        model_name="digits", model_version="1", request_id=None, outputs=outputs, binary=True
    )
    length = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:length])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert sizes == [80, 16] and len(body) == length + 96
    assert np.array_equal(np.frombuffer(body[length + 80 :], dtype="<i8"), labels)
