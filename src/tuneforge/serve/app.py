"""The FastAPI application: OpenAI's chat completions (plain and SSE streams), models, and reward scores.

    app = create_app(engine, settings=api_settings())   # model name, API key, MAX_CONCURRENT, media access

`engine` is an infer engine (ChatEngine or a vLLM / SGLang one) for chat, `scorer` a RewardScorer for
/v1/score/evaluation; a server has one or the other, as in LLaMA-Factory (stage rm serves scores).
Requests run through a Batcher; at most `max_concurrent` requests are admitted at once (the rest wait in
line), and those admitted are batched into shared generate calls. `settings` come from the server's
environment (serve/server.py, `api_settings`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import UserError
from .batcher import Batcher, Job
from .body_limit import BodyLimit
from .errors import APIError, error_body, json_error_message, validation_message
from .limits import check_message_count, check_text, fit_to_context
from .messages import convert_request
from .protocol import ChatCompletionRequest, ScoreEvaluationRequest

if TYPE_CHECKING:
    from .server import ApiSettings

logger = logging.getLogger(__name__)
MAX_STOP_WORDS = 4  # OpenAI's limit
ROUTES = "GET /v1/models, POST /v1/chat/completions, POST /v1/score/evaluation"


def create_app(engine: Any = None, scorer: Any = None, *, settings: ApiSettings) -> FastAPI:
    model_name, api_key, max_concurrent = settings.model_name, settings.api_key, settings.max_concurrent
    app = FastAPI(title="tuneforge OpenAI-compatible API")
    app.state.batcher = Batcher(engine, max_batch_rows=max(max_concurrent, 1)) if engine is not None else None
    app.state.admitted = asyncio.Semaphore(max(max_concurrent, 1))
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    _add_error_handlers(app)

    async def check_key(request: Request) -> None:
        if not api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # compare_digest: the time taken does not tell how much of a guessed key was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "invalid or missing API key: send the header `Authorization: Bearer <API_KEY>`",
                           code="invalid_api_key")

    def check_model(name: str) -> None:
        if name != model_name:
            raise APIError(404, f"the model {name!r} does not exist; this server serves {model_name!r}",
                           "model", "model_not_found")

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    async def list_models() -> dict:
        return {"object": "list", "data": [_model_card(model_name)]}

    @app.get("/v1/models/{name}", dependencies=[Depends(check_key)])
    async def get_model(name: str) -> dict:
        check_model(name)
        return _model_card(model_name)

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)])
    async def chat_completions(request: ChatCompletionRequest, http_request: Request) -> Any:
        check_model(request.model)
        if engine is None:
            raise APIError(405, "this server serves a reward model: use POST /v1/score/evaluation, or serve a "
                           "chat model (any stage but rm) for chat completions")
        prepared = await run_in_threadpool(_prepare, engine, request, app.state.batcher.max_batch_rows, settings)
        if request.stream:
            from sse_starlette import EventSourceResponse

            return EventSourceResponse(_stream(app, engine, request, *prepared), ping=15)
        return await _complete_unless_client_leaves(app, engine, request, http_request, *prepared)

    @app.post("/v1/score/evaluation", dependencies=[Depends(check_key)])
    async def score_evaluation(request: ScoreEvaluationRequest) -> dict:
        from ..infer.scoring import NEEDS_REWARD_MODEL

        # No model-name check here: LLaMA-Factory's PPO client (and ours, reward_model_type: api) always sends
        # "model": "model", and a scoring server holds one reward model, so the name selects nothing.
        if scorer is None:
            raise APIError(405, f"scoring {NEEDS_REWARD_MODEL}; this server serves a chat model. Serve the "
                           "output of a `stage: rm` run with `stage: rm` in the config")
        if not request.messages:
            raise APIError(400, "messages: give at least one text to score", "messages")
        check_message_count(len(request.messages), settings.max_messages)
        check_text(request.model_dump())
        async with app.state.admitted:
            scores = await run_in_threadpool(scorer.score, request.messages, request.max_length)
        return {"id": f"scoreval-{uuid.uuid4().hex}", "object": "score.evaluation", "model": model_name,
                "scores": scores}

    return app


# ---- chat completions ------------------------------------------------------------------------------------

def _prepare(engine: Any, request: ChatCompletionRequest, max_rows: int, settings: ApiSettings
             ) -> tuple[Job, str | None]:
    """Everything that can be wrong with a request, found before generation: (the job, its tools JSON)."""
    from ..config.generation import resolve_generation

    check_message_count(len(request.messages), settings.max_messages)
    check_text(request.model_dump(exclude_none=True))
    problems = request.unsupported_fields()
    if problems:
        raise APIError(400, "; ".join(problems))
    if request.n > max_rows:
        raise APIError(400, f"n: {request.n} answers exceed this server's batch of {max_rows} (MAX_CONCURRENT)",
                       "n")
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    if len(stop) > MAX_STOP_WORDS or not all(stop):
        raise APIError(400, f"stop: give up to {MAX_STOP_WORDS} non-empty strings", "stop")
    messages, system, tools, media = convert_request(request, settings, engine.media_problem)
    requested = request.max_completion_tokens or request.max_tokens
    overrides = dict(do_sample=request.do_sample, temperature=request.temperature, top_p=request.top_p,
                     max_new_tokens=requested)
    kwargs, _ = resolve_generation(engine.generation, overrides)  # ConfigError (-> 400) names a bad value
    prompt_ids = engine.build_prompt(messages, system, tools, media=media)
    overrides["max_new_tokens"] = fit_to_context(len(prompt_ids), engine.context_length, requested, kwargs)
    job = Job(prompt_ids=prompt_ids, n=request.n, media=media or None, overrides=overrides, stop=tuple(stop),
              presence_penalty=request.presence_penalty)
    return job, tools


async def _complete_unless_client_leaves(app: FastAPI, engine: Any, request: ChatCompletionRequest,
                                         http_request: Request, job: Job, tools: str | None) -> Any:
    """The answer; when the client hangs up first, its generation stops at the next token (or it leaves
    the line) and nothing is sent. uvicorn does not cancel a plain request whose client left, so the
    route watches for the disconnect itself (sse-starlette does this for streams)."""
    answering = asyncio.ensure_future(_answers(app, job))
    leaving = asyncio.ensure_future(_client_left(http_request))
    try:
        await asyncio.wait({answering, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        leaving.cancel()
        job.cancelled.set()  # a client that left mid-answer frees its rows at the next token
        if not answering.done():
            answering.cancel()
    if not answering.done() or answering.cancelled():  # a cancelled task ends at its next step, not at once
        logger.info("client left before its answer; generation stopped")
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
    return _completion(engine, request, job, tools, answering.result())


async def _answers(app: FastAPI, job: Job) -> list:
    async with app.state.admitted:
        return await asyncio.wrap_future(app.state.batcher.submit(job))


async def _client_left(http_request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so the next ASGI message is that)."""
    while (await http_request.receive())["type"] != "http.disconnect":
        pass


def _completion(engine: Any, request: ChatCompletionRequest, job: Job, tools: str | None, responses: list) -> dict:
    choices = []
    for index, response in enumerate(responses):
        calls = _tool_calls(engine, response) if tools else None
        if calls:
            message = {"role": "assistant", "content": None, "tool_calls": calls}
            finish_reason = "tool_calls"
        else:
            message = {"role": "assistant", "content": response.text}
            finish_reason = response.finish_reason
        choices.append({"index": index, "message": message, "finish_reason": finish_reason, "logprobs": None})
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": request.model, "choices": choices, "usage": _usage(job, responses)}


async def _stream(app: FastAPI, engine: Any, request: ChatCompletionRequest, job: Job, tools: str | None):
    """SSE events: a role chunk per answer, text deltas, a closing chunk per answer, usage if asked, [DONE].

    With tools, an answer is held back until it is complete: only then can it be told apart from a tool call.
    """
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(index: int, delta: dict, finish_reason: str | None = None) -> str:
        return json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                           "model": request.model, "choices": [{"index": index, "delta": delta,
                                                                 "finish_reason": finish_reason,
                                                                 "logprobs": None}]}, ensure_ascii=False)

    def forward_piece(index: int, text: str) -> None:  # from the generating thread into this loop
        loop.call_soon_threadsafe(events.put_nowait, (index, text))

    if not tools:
        job.on_piece = forward_piece
    async with app.state.admitted:
        future = app.state.batcher.submit(job)
        future.add_done_callback(lambda _future: loop.call_soon_threadsafe(events.put_nowait, None))
        try:
            for index in range(job.n):
                yield chunk(index, {"role": "assistant", "content": ""})
            while (event := await events.get()) is not None:
                yield chunk(event[0], {"content": event[1]})
            try:
                responses = future.result()
            except UserError as error:
                yield json.dumps(error_body(400, str(error)))
                return
            except Exception as error:  # noqa: BLE001 - the stream has started; report it in the stream
                logger.exception("generation failed")
                yield json.dumps(error_body(500, f"generation failed: {error}"))
                return
            for index, response in enumerate(responses):
                calls = _tool_calls(engine, response) if tools else None
                if calls:
                    deltas = [{**call, "index": position} for position, call in enumerate(calls)]
                    yield chunk(index, {"tool_calls": deltas}, "tool_calls")
                    continue
                if tools and response.text:
                    yield chunk(index, {"content": response.text})
                yield chunk(index, {}, response.finish_reason)
            if request.stream_options and request.stream_options.include_usage:
                yield json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                  "model": request.model, "choices": [], "usage": _usage(job, responses)})
            yield "[DONE]"
        finally:
            job.cancelled.set()  # a client that left stops its rows at the next token


def _tool_calls(engine: Any, response: Any) -> list[dict] | None:
    """The answer's tool calls in OpenAI's layout, or None when it calls none.

    A tokenizer may mark the call words (<tool_call>, [TOOL_CALLS], ...) as special tokens, which
    skip_special_tokens removes from the text; the ids are then decoded again with them kept."""
    calls = engine.template.extract_tool(response.text)
    if not isinstance(calls, list) and response.answer_ids:
        raw = engine.tokenizer.decode(response.answer_ids, skip_special_tokens=False)
        if raw != response.text:
            calls = engine.template.extract_tool(raw)
    if not isinstance(calls, list) or not calls:
        return None
    return [{"id": f"call_{uuid.uuid4().hex}", "type": "function",
             "function": {"name": call.name, "arguments": call.arguments}} for call in calls]


def _usage(job: Job, responses: list) -> dict:
    completion = sum(response.response_length for response in responses)
    return {"prompt_tokens": len(job.prompt_ids), "completion_tokens": completion,
            "total_tokens": len(job.prompt_ids) + completion}


def _model_card(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "tuneforge"}


# ---- errors ------------------------------------------------------------------------------------------------

def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_request: Request, error: APIError) -> JSONResponse:
        return JSONResponse(error_body(error.status, error.message, error.param, error.code), error.status)

    @app.exception_handler(UserError)
    async def user_error(_request: Request, error: UserError) -> JSONResponse:
        return JSONResponse(error_body(400, str(error)), 400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # 400 as OpenAI answers a body of the wrong shape (FastAPI's default is 422).
        errors = list(error.errors())
        if errors and errors[0].get("type") == "json_invalid":
            body = (await request.body()).decode("utf-8", "replace")
            return JSONResponse(error_body(400, json_error_message(body, errors[0])), 400)
        message, param = validation_message(errors)
        return JSONResponse(error_body(400, message, param), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = str(error.detail)
        if error.status_code == 404:
            message = f"no route {request.method} {request.url.path}; this API serves {ROUTES}"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; this API serves {ROUTES}"
        return JSONResponse(error_body(error.status_code, message), error.status_code)

    @app.exception_handler(Exception)
    async def bug(_request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return JSONResponse(error_body(500, f"internal error in tuneforge: {type(error).__name__}: {error}"), 500)
