"""The HTTP ingress of a served application: Open Inference Protocol and OpenAI completions.

One FastAPI app per Serve application; it checks every request (API key, body
size, JSON, tensors, sampling options) before a model replica sees it, and
answers every client mistake with a 4xx JSON error: ``{"error": "..."}`` on
the V2 routes, OpenAI's ``{"error": {"message", "type", ...}}`` on ``/v1``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from raylift.errors import RequestError
from raylift.serving.generate import sampling_from
from raylift.serving.keys import KeyCheck, read_api_keys
from raylift.serving.protocol import (
    TensorSpec,
    decode_inputs,
    encode_response,
    parse_json_object,
    split_body,
    wants_binary_outputs,
)
from raylift.specs.serve import ServedModel, ServeSpec

app = FastAPI(title="raylift", docs_url=None, redoc_url=None, openapi_url=None)
READY_TIMEOUT_S = 2.0


class Ingress:
    """Deployment body (wrapped by ``serve.deployment`` + ``serve.ingress(app)`` in app.py)."""

    def __init__(self, spec: dict[str, Any], handles: list[Any] | None) -> None:
        """``handles``: one deployment handle per spec entry, or None when the spec has a
        single model, which this replica then loads and serves itself."""
        from raylift.serving.metrics import IngressMetrics

        self.spec = ServeSpec.model_validate(spec)
        self.keys = KeyCheck(read_api_keys(self.spec.auth))
        if handles is None:
            from raylift.serving.local_handle import LocalHandle
            from raylift.serving.model_server import ModelServer

            (entry,) = self.spec.models
            server = ModelServer(entry.model_dump(mode="json"), self.spec.model_path(entry))
            handles = [LocalHandle(server)]
        self.entries: dict[tuple[str, str], tuple[ServedModel, Any]] = {}
        self.default_version: dict[str, str] = {}
        for entry, handle in zip(self.spec.models, handles, strict=True):
            self.entries[(entry.name, entry.version)] = (entry, handle)
            self.default_version.setdefault(entry.name, entry.version)  # the first listed
        self.max_body = max(e.limits.max_body_bytes for e in self.spec.models)
        self._metadata: dict[tuple[str, str], dict[str, Any]] = {}
        self.metrics = IngressMetrics()

    # -- lookups ---------------------------------------------------------------

    def _find(self, name: str, version: str | None) -> tuple[ServedModel, Any]:
        if name not in self.default_version:
            known = sorted(self.default_version)
            raise RequestError(f"unknown model {name!r}; this server has {known}", status=404)
        key = (name, version or self.default_version[name])
        if key not in self.entries:
            versions = sorted(v for n, v in self.entries if n == name)
            raise RequestError(
                f"model {name!r} has no version {version!r}; it has {versions}", status=404
            )
        return self.entries[key]

    async def _meta(self, entry: ServedModel, handle: Any) -> dict[str, Any]:
        key = (entry.name, entry.version)
        if key not in self._metadata:
            self._metadata[key] = await handle.metadata.remote()
        return self._metadata[key]

    def _check_key(self, request: Request) -> None:
        if not self.keys.allows(request.headers):
            raise RequestError("missing or wrong API key", status=401)

    # -- routes: health and metadata --------------------------------------------

    @app.get("/v2/health/live")
    async def live(self) -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready(self) -> Response:
        ok = all(await asyncio.gather(*(self._is_ready(h) for _, h in self.entries.values())))
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2")
    async def server_metadata(self, request: Request) -> Response:
        async def answer() -> Any:
            from raylift.version import __version__

            return {
                "name": "raylift",
                "version": __version__,
                "extensions": ["binary_tensor_data"],
            }

        return await self._v2(request, "", None, answer)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(self, request: Request, name: str, version: str | None = None) -> Any:
        async def answer() -> Any:
            entry, handle = self._find(name, version)
            return await self._meta(entry, handle)

        return await self._v2(request, name, version, answer)

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(self, request: Request, name: str, version: str | None = None) -> Any:
        async def answer() -> Any:
            _, handle = self._find(name, version)
            ok = await self._is_ready(handle)
            return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

        return await self._v2(request, name, version, answer)

    # -- routes: inference ------------------------------------------------------

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(self, request: Request, name: str, version: str | None = None) -> Any:
        async def answer() -> Any:
            entry, handle = self._find(name, version)
            body = await _read_body(request, entry.limits.max_body_bytes)
            parsed, binary = split_body(body, dict(request.headers))
            meta = await self._meta(entry, handle)
            specs = [
                TensorSpec(t["name"], t["datatype"], tuple(t["shape"])) for t in meta["inputs"]
            ]
            arrays = decode_inputs(parsed, binary, specs, max_rows=entry.limits.max_rows)
            outputs = await self._run(entry, handle, meta, arrays, parsed)
            wanted = _requested_outputs(parsed, outputs)
            content, headers = encode_response(
                model_name=entry.name,
                model_version=entry.version,
                request_id=parsed.get("id") if isinstance(parsed.get("id"), str) else None,
                outputs={k: outputs[k] for k in wanted},
                binary=wants_binary_outputs(parsed),
            )
            media = "application/octet-stream" if headers else "application/json"
            return Response(content, media_type=media, headers=headers)

        return await self._v2(request, name, version, answer)

    async def _run(
        self,
        entry: ServedModel,
        handle: Any,
        meta: dict[str, Any],
        arrays: dict[str, np.ndarray],
        request: dict[str, Any],
    ) -> dict[str, tuple[str, np.ndarray]]:
        if meta["parameters"]["task"] == "language_modeling":
            options = request.get("parameters") or {}
            if not isinstance(options, dict):
                raise RequestError("'parameters' must be an object")
            sampling_from(options, max_tokens_limit=entry.limits.max_tokens)
            texts = arrays["text_input"].reshape(-1).tolist()
            done = await asyncio.gather(*(handle.complete.remote(t, options) for t in texts))
            out = np.empty(len(done), dtype=object)
            out[:] = [d["text"] for d in done]
            return {"text_output": ("BYTES", out.reshape(arrays["text_input"].shape))}
        result = await handle.classify.remote(arrays["input"])
        if isinstance(result, dict):
            raise RequestError(result["error"])
        probs, labels = result
        return {"probabilities": ("FP32", probs), "label": ("INT64", labels)}

    # -- routes: OpenAI-compatible completions ------------------------------------

    @app.get("/v1/models")
    async def openai_models(self, request: Request) -> Any:
        async def answer() -> Any:
            data = []
            for (name, version), (entry, handle) in self.entries.items():
                meta = await self._meta(entry, handle)
                if meta["parameters"]["task"] != "language_modeling":
                    continue
                ids = [f"{name}:{version}"]
                if self.default_version[name] == version:
                    ids.insert(0, name)
                data += [
                    {"id": i, "object": "model", "created": 0, "owned_by": "raylift"} for i in ids
                ]
            return {"object": "list", "data": data}

        return await self._openai(request, "", None, answer)

    @app.post("/v1/completions")
    async def completions(self, request: Request) -> Any:
        state: dict[str, str | None] = {"name": "", "version": None}

        async def answer() -> Any:
            body = await _read_body(request, self.max_body)
            parsed = parse_json_object(body, "the request must be a JSON object")
            entry, handle = self._openai_model(parsed.get("model"))
            state["name"], state["version"] = entry.name, entry.version
            meta = await self._meta(entry, handle)
            if meta["parameters"]["task"] != "language_modeling":
                raise RequestError(f"model {entry.name!r} is a classifier; use /v2 infer")
            prompts = _prompts(parsed)
            options = {
                k: parsed.get(k)
                for k in ("max_tokens", "temperature", "top_k", "top_p", "seed", "stop")
            }
            sampling_from(options, max_tokens_limit=entry.limits.max_tokens)
            model_id = parsed["model"]
            if parsed.get("stream"):
                if len(prompts) != 1:
                    raise RequestError("stream: true takes a single prompt")
                include_usage = bool((parsed.get("stream_options") or {}).get("include_usage"))
                events = _sse(handle, prompts[0], options, model_id, include_usage)
                return StreamingResponse(events, media_type="text/event-stream")
            done = await asyncio.gather(*(handle.complete.remote(p, options) for p in prompts))
            return _completion_response(model_id, done)

        return await self._openai(request, state, None, answer)

    def _openai_model(self, model: Any) -> tuple[ServedModel, Any]:
        if not isinstance(model, str) or not model:
            raise RequestError("'model' is required (a served model's name, or name:version)")
        name, _, version = model.partition(":")
        return self._find(name, version or None)

    # -- plumbing ---------------------------------------------------------------

    async def _is_ready(self, handle: Any) -> bool:
        try:
            return bool(await asyncio.wait_for(handle.ready.remote(), READY_TIMEOUT_S))
        except Exception:
            return False

    async def _v2(self, request: Request, name: str, version: str | None, answer: Any) -> Any:
        return await self._answer(request, name, version, answer, _v2_error)

    async def _openai(self, request: Request, name: Any, version: str | None, answer: Any) -> Any:
        return await self._answer(request, name, version, answer, _openai_error)

    async def _answer(
        self, request: Request, name: Any, version: str | None, answer: Any, error: Any
    ) -> Any:
        started = time.perf_counter()
        code = 500
        try:
            self._check_key(request)
            result = await answer()
            code = getattr(result, "status_code", 200)
            return result
        except Exception as exc:
            client = _client_error(exc)
            if client is None:
                raise
            code = client.status
            response = error(client)
            if code == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
            return response
        finally:
            if isinstance(name, dict):  # filled in once the body names the model
                name, version = name["name"], name["version"]
            if name and version is None and name in self.default_version:
                version = self.default_version[name]
            self.metrics.observe(name, version or "", code, time.perf_counter() - started)


def _client_error(exc: BaseException) -> RequestError | None:
    """The RequestError behind ``exc`` (raised here or in a model replica), else None."""
    seen: BaseException | None = exc
    while seen is not None:
        cause = getattr(seen, "cause", None)  # a RayTaskError's original exception
        if isinstance(cause, RequestError):
            return cause
        if isinstance(seen, RequestError):
            return seen
        seen = cause or seen.__cause__
    return None


def _v2_error(error: RequestError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def _openai_error(error: RequestError) -> JSONResponse:
    kind = {401: "authentication_error", 404: "not_found_error"}.get(
        error.status, "invalid_request_error"
    )
    body = {"error": {"message": str(error), "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=error.status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the body is {declared} bytes; at most {limit}", status=413)
    body = await request.body()  # Serve's proxy has the whole body by now
    if len(body) > limit:
        raise RequestError(f"the body is {len(body)} bytes; at most {limit}", status=413)
    return body


def _requested_outputs(request: dict[str, Any], outputs: dict[str, Any]) -> list[str]:
    requested = request.get("outputs")
    if not requested:
        return list(outputs)
    if not isinstance(requested, list):
        raise RequestError("'outputs' must be a list of {name: ...}")
    names = []
    for item in requested:
        name = item.get("name") if isinstance(item, dict) else None
        if name not in outputs:
            raise RequestError(f"unknown output {name!r}; this model gives {list(outputs)}")
        names.append(name)
    return names


def _prompts(parsed: dict[str, Any]) -> list[str]:
    prompt = parsed.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise RequestError("'prompt' must be a string or a non-empty list of strings")
    if any(not p for p in prompts):
        raise RequestError("'prompt' must not be empty")
    if len(prompts) > 16:
        raise RequestError("at most 16 prompts in one request")
    for key, allowed in (("n", 1), ("best_of", 1)):
        if parsed.get(key) not in (None, allowed):
            raise RequestError(f"{key} must be 1 (one completion per prompt)")
    if parsed.get("echo") or parsed.get("logprobs") is not None:
        raise RequestError("echo and logprobs are not supported")
    return prompts


def _completion_response(model_id: str, done: list[dict[str, Any]]) -> dict[str, Any]:
    prompt_tokens = sum(d["prompt_tokens"] for d in done)
    completion_tokens = sum(d["completion_tokens"] for d in done)
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [
            {"text": d["text"], "index": i, "logprobs": None, "finish_reason": d["finish_reason"]}
            for i, d in enumerate(done)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


async def _sse(
    handle: Any, prompt: str, options: dict[str, Any], model_id: str, include_usage: bool
) -> AsyncIterator[str]:
    """Server-sent events: one chunk per text piece, the finish reason, then [DONE]."""
    base = {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model_id,
    }

    def event(text: str, finish: str | None, usage: dict[str, int] | None = None) -> str:
        choices = [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]
        chunk = {**base, "choices": choices if usage is None else []}
        if usage is not None:
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk)}\n\n"

    stream = handle.options(stream=True).complete_stream.remote(prompt, options)
    try:
        async for item in stream:
            if item.get("done"):
                yield event("", item["finish_reason"])
                if include_usage:
                    p, c = item["prompt_tokens"], item["completion_tokens"]
                    usage = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
                    yield event("", None, usage)
            else:
                yield event(item["text"], None)
    except Exception as exc:  # the replica died mid-stream: tell the client, then end
        message = {
            "error": {"message": f"generation failed: {type(exc).__name__}", "type": "server_error"}
        }
        yield f"data: {json.dumps(message)}\n\n"
    yield "data: [DONE]\n\n"


def _as_serve_ingress() -> Any:
    """``serve.ingress(app)`` at import time: a replica that unpickles the deployment
    imports this module, and the routes must be bound to the class there too."""
    from ray import serve

    return serve.ingress(app)(Ingress)


IngressServer = _as_serve_ingress()
