"""The Open Inference Protocol (KServe V2) on the wire: infer requests in, responses out.

Pure functions over bytes and numpy, no Serve: the deployment calls them. Inputs
come as JSON tensors (``data`` flat or nested, row-major; UTF-8 strings for
``BYTES``) or with the binary tensor extension that ``tritonclient`` uses by
default (a JSON header of ``Inference-Header-Content-Length`` bytes, then each
input's raw little-endian bytes, sized by its ``parameters.binary_data_size``;
``BYTES`` elements each with a 4-byte length prefix). Every problem with a
request is a :class:`RequestError` carrying a 4xx status and a message that
names the input and what was wrong; nothing here raises anything else for bad
client input.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from raylift.errors import RequestError

HEADER_LENGTH = "inference-header-content-length"

# V2 datatypes with a fixed width, and their little-endian numpy types.
DTYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
NUMERIC = frozenset(DTYPES) - {"BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output in a model's metadata; ``-1`` in ``shape`` is any size."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def split_body(body: bytes, headers: dict[str, str]) -> tuple[dict[str, Any], bytes]:
    """The JSON header of a request and the binary tensor bytes after it (may be empty)."""
    length_text = _header(headers, HEADER_LENGTH)
    if length_text is None:
        json_part, binary = body, b""
    else:
        try:
            length = int(length_text)
        except ValueError:
            raise RequestError(
                f"Inference-Header-Content-Length {length_text!r} is not an integer"
            ) from None
        if not 0 < length <= len(body):
            raise RequestError(
                f"Inference-Header-Content-Length {length} is outside the body ({len(body)} bytes)"
            )
        json_part, binary = body[:length], body[length:]
    request = parse_json_object(
        json_part, "the request must be a JSON object with an 'inputs' list"
    )
    return request, binary


def parse_json_object(data: bytes, not_an_object: str) -> dict[str, Any]:
    """``data`` as a JSON object; malformed JSON or another JSON value -> 400."""
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"malformed JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise RequestError(not_an_object)
    return parsed


def decode_inputs(
    request: dict[str, Any], binary: bytes, specs: list[TensorSpec], *, max_rows: int
) -> dict[str, np.ndarray]:
    """Every input the model declares, as an array of its declared shape; checked."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("'inputs' must be a non-empty list of tensors")
    by_name: dict[str, dict[str, Any]] = {}
    for item in inputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError("each input must be an object with a 'name'")
        by_name[item["name"]] = item
    expected = {spec.name for spec in specs}
    unknown = sorted(set(by_name) - expected)
    if unknown:
        raise RequestError(f"unknown input {unknown[0]!r}; this model takes {sorted(expected)}")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for item in inputs:  # binary data comes in the order the inputs are listed
        spec = next(s for s in specs if s.name == item["name"])
        array, offset = _decode_tensor(item, spec, binary, offset)
        arrays[spec.name] = array
    if offset != len(binary):
        raise RequestError(
            f"{len(binary) - offset} bytes of binary data after the header belong to no input"
        )
    missing = sorted(expected - set(arrays))
    if missing:
        raise RequestError(f"missing input {missing[0]!r}")
    rows = {array.shape[0] for array in arrays.values() if array.ndim}
    if len(rows) > 1:
        raise RequestError(f"inputs disagree on the batch size: {sorted(rows)}")
    if rows and max(rows) > max_rows:
        raise RequestError(
            f"{max(rows)} rows in one request; at most {max_rows} (split the batch)", status=413
        )
    return arrays


def _decode_tensor(
    item: dict[str, Any], spec: TensorSpec, binary: bytes, offset: int
) -> tuple[np.ndarray, int]:
    name = spec.name
    datatype = item.get("datatype")
    if spec.datatype == "BYTES" or datatype == "BYTES":
        return _decode_bytes_tensor(item, spec, binary, offset)
    if datatype not in DTYPES:
        raise RequestError(
            f"input {name!r}: datatype {datatype!r} is not one this model takes "
            f"(send {spec.datatype}; numeric types are converted)"
        )
    if datatype == "BOOL" and spec.datatype != "BOOL":
        raise RequestError(f"input {name!r}: BOOL given, {spec.datatype} expected")
    shape = _shape_of(item, name)
    _check_shape(name, tuple(shape), spec.shape)
    count = math.prod(shape)
    size = (item.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise RequestError(
                f"input {name!r}: binary_data_size {size!r} runs past the {len(binary)} "
                "bytes of binary data"
            )
        width = np.dtype(DTYPES[datatype]).itemsize
        if size != count * width:
            raise RequestError(
                f"input {name!r}: shape {shape} of {datatype} needs {count * width} bytes, "
                f"binary_data_size says {size}"
            )
        flat = np.frombuffer(binary, dtype=DTYPES[datatype], count=count, offset=offset)
        offset += size
    else:
        flat = _json_data(name, item.get("data"), datatype, count)
    with np.errstate(over="ignore", invalid="ignore"):  # out of range: inf, refused next
        array = flat.astype(DTYPES[spec.datatype], copy=False).reshape(shape)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise RequestError(f"input {name!r}: NaN or infinity is not allowed")
    return array, offset


def _decode_bytes_tensor(
    item: dict[str, Any], spec: TensorSpec, binary: bytes, offset: int
) -> tuple[np.ndarray, int]:
    """A BYTES tensor of UTF-8 strings: JSON strings, or 4-byte-length-prefixed binary."""
    name = spec.name
    if item.get("datatype") != "BYTES" or spec.datatype != "BYTES":
        raise RequestError(
            f"input {name!r}: datatype {item.get('datatype')!r} given, {spec.datatype} expected"
        )
    shape = _shape_of(item, name)
    _check_shape(name, tuple(shape), spec.shape)
    count = math.prod(shape)
    size = (item.get("parameters") or {}).get("binary_data_size")
    values: list[Any]
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise RequestError(
                f"input {name!r}: binary_data_size {size!r} runs past the {len(binary)} "
                "bytes of binary data"
            )
        values, end, cursor = [], offset + size, offset
        while cursor < end:
            if cursor + 4 > end:
                raise RequestError(f"input {name!r}: a BYTES element's length prefix is cut off")
            length = int.from_bytes(binary[cursor : cursor + 4], "little")
            cursor += 4
            if cursor + length > end:
                raise RequestError(f"input {name!r}: a BYTES element runs past its data")
            values.append(binary[cursor : cursor + length])
            cursor += length
        offset = end
    else:
        data = item.get("data")
        if data is None:
            raise RequestError(f"input {name!r}: no 'data' (and no binary_data_size)")
        values = _flatten(data)
    if len(values) != count:
        raise RequestError(f"input {name!r}: {len(values)} values for a shape of {count}")
    texts = []
    for value in values:
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(f"input {name!r}: BYTES data must be UTF-8 text") from None
        if not isinstance(value, str):
            raise RequestError(f"input {name!r}: BYTES data must be strings, got {value!r}")
        texts.append(value)
    array = np.empty(count, dtype=object)
    array[:] = texts
    return array.reshape(shape), offset


def _shape_of(item: dict[str, Any], name: str) -> list[int]:
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise RequestError(f"input {name!r}: 'shape' must be a list of non-negative integers")
    return shape


def _check_shape(name: str, got: tuple[int, ...], expected: tuple[int, ...]) -> None:
    fits = len(got) == len(expected) and all(
        e in (-1, g) for g, e in zip(got, expected, strict=True)
    )
    if not fits:
        shown = "[" + ", ".join("N" if e == -1 else str(e) for e in expected) + "]"
        raise RequestError(f"input {name!r}: shape {list(got)} given, {shown} expected")


def _json_data(name: str, data: Any, datatype: str, count: int) -> np.ndarray:
    if data is None:
        raise RequestError(f"input {name!r}: no 'data' (and no binary_data_size)")
    flat = _flatten(data)
    if len(flat) != count:
        raise RequestError(f"input {name!r}: {len(flat)} values for a shape of {count}")
    want_bool = datatype == "BOOL"
    for value in flat:
        is_bool = isinstance(value, bool)
        if want_bool != is_bool or not isinstance(value, int | float):
            kind = "true/false" if want_bool else "numbers"
            raise RequestError(f"input {name!r}: {datatype} data must be {kind}, got {value!r}")
    try:
        with np.errstate(over="ignore"):  # out of range for FP16/FP32: inf, refused below
            return np.asarray(flat, dtype=DTYPES[datatype])
    except OverflowError:
        raise RequestError(f"input {name!r}: a value does not fit {datatype}") from None


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def encode_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: dict[str, tuple[str, np.ndarray]],
    binary: bool,
) -> tuple[bytes, dict[str, str]]:
    """The response body and extra headers; ``outputs``: name -> (datatype, array)."""
    tensors, chunks = [], []
    for name, (datatype, array) in outputs.items():
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if datatype == "BYTES":
            texts = [str(v) for v in array.reshape(-1).tolist()]
            if binary:
                raw = b"".join(
                    len(b).to_bytes(4, "little") + b for b in (t.encode("utf-8") for t in texts)
                )
                tensor["parameters"] = {"binary_data_size": len(raw)}
                chunks.append(raw)
            else:
                tensor["data"] = texts
        elif binary:
            raw = np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = array.reshape(-1).tolist()
        tensors.append(tensor)
    header: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        header["id"] = request_id
    header["outputs"] = tensors
    head = json.dumps(header).encode()
    if not binary:
        return head, {}
    return head + b"".join(chunks), {"Inference-Header-Content-Length": str(len(head))}


def wants_binary_outputs(request: dict[str, Any]) -> bool:
    """The client asked for binary outputs (all of them, or any one)."""
    if (request.get("parameters") or {}).get("binary_data_output"):
        return True
    requested = request.get("outputs") or []
    return any(
        isinstance(o, dict) and (o.get("parameters") or {}).get("binary_data") for o in requested
    )


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
