"""The HTTP reward server: FastAPI routes over a :class:`~rmlib.serve.batcher.Batcher`.

Routes:

* ``GET /health``: ``{"status": "ok", "model", "attributes", "max_length", "batches", "sequences",
  "model_seconds", "encode_seconds", "truncated": {"prompts", "responses"}, "unauthorized":
  {"missing", "wrong"}}`` (counters since start; ``unauthorized`` only with an API key);
* ``POST /get_reward``: OpenRLHF's remote reward model protocol (see :mod:`rmlib.serve.protocol`),
  answered with ``{"rewards", "scores", "extra_logs"}`` (``extra_logs`` holds each head's values);
* ``POST /score``: ``{"prompt", "response"}`` or ``{"messages"}`` → ``{"reward", "heads"}``; a list
  of those → a list of answers in order.

``reward`` is the raw model output (no sigmoid): the only head, or the heads combined with the
server's ``combine`` weights, or else the first head; ``heads`` names every head's value. A
distributional model (``rmlib_distribution`` in its config.json) answers its predicted mean as
``reward`` and its spread as ``std`` beside it (``/score`` rows, and ``/get_reward``'s ``std`` list and
``extra_logs["reward_std"]``), a rating model also ``probs`` per rating level in ``/score``: an RL loop
can then treat a contested reward differently from a clear one. A bad
request gets a 4xx status and ``{"error": message}``; the server keeps serving.

A long text is never refused: OpenRLHF's client retries a failed request five times and then leaves
the sample's reward as None, so a 413 for one long generation silently loses a reward. Sequences are
truncated by the featurizer's one rule (the prompt from the left, never into the response; a response
longer than ``max_length`` keeps its end, where the reward is read: ``keep_response_end``), and
counted in ``/health``. 413 is kept for a body over ``max_body_bytes`` and more than ``max_items``
sequences. With ``api_key`` every route but ``/health`` asks for ``Authorization: Bearer <key>``
(:mod:`rmlib.serve.auth`).
``POST /v1/chat/completions`` answers a 404 in OpenAI's error shape: a reward model does not generate.

A causal LM (a Pairwise Justifier) is served by :func:`create_chat_app` instead: OpenAI's
``POST /v1/chat/completions`` and ``GET /v1/models`` (:mod:`rmlib.serve.chat`) and ``GET /health``,
while ``/score`` and ``/get_reward`` answer a 404 saying it gives no scalar reward.

A handler only reads and checks its request; the batcher tokenizes and scores what concurrent
requests sent, together. Answers are ``JSONResponse`` objects built by the handler, which skips
FastAPI's response-model validation and ``jsonable_encoder`` pass (plain lists and floats need
neither).
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' `Request` annotation at run time
import json
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from rmlib.data.tokenize import Featurizer
from rmlib.serve.auth import BearerAuth
from rmlib.serve.batcher import Batcher
from rmlib.serve.chat import ChatError, Generator, add_chat_routes, not_generative_error
from rmlib.serve.protocol import (
    Limits,
    QueryEncoder,
    RequestError,
    parse_openrlhf,
    parse_plain,
    plain_misfit,
    plain_sequences,
    query_misfit,
)


@dataclass
class ServeOptions:
    """How the server batches and what one request may ask for."""

    max_batch_sequences: int = 256  # sequences the batcher gathers before a model call
    max_wait_ms: float = 5.0  # how long the first queued sequence waits for company
    batch_size: int = 64  # sequences per model call inside a gathered batch (an upper bound)
    max_tokens: int | None = None  # padded tokens per model call (default: batch_size × the longest)
    max_items: int = 1024  # sequences per request
    max_chars: int = 200_000  # characters per chat message (a reward request's texts are truncated instead)
    max_body_bytes: int = 16 * 2**20  # request body size
    combine: Sequence[float] | None = None  # weights of the heads in `reward`
    api_key: str | None = field(default=None, repr=False)  # bearer token of every route but /health
    # a generative model (causal LM, /v1/chat/completions): max_items caps the messages of a request,
    # max_chars each message, max_batch_sequences the greedy requests generated together and batch_size
    # the rows of one generate call
    max_new_tokens: int = 1024  # tokens one completion may ask for (more: 400)
    max_pending: int = 256  # completions queued or generating (more: 429, retry later)


def _guarded(auth: BearerAuth | None) -> dict[str, Any]:
    """FastAPI arguments of an app whose routes ``auth`` guards: the dependency on every route, and no
    interactive docs (``/docs``, ``/openapi.json`` are not routes a dependency reaches)."""
    if auth is None:
        return {}
    from fastapi import Depends

    return {"dependencies": [Depends(auth.dependency())], "docs_url": None, "redoc_url": None, "openapi_url": None}


def _rejections(auth: BearerAuth | None) -> dict[str, Any]:
    return {} if auth is None else {"unauthorized": dict(auth.rejected)}


def _install_hint() -> ImportError:
    return ImportError("rmlib serve needs FastAPI and uvicorn: pip install 'rmlib[serve]'")


def body_reader(max_body_bytes: int):
    """``await read(request)``: the JSON body, 413 past ``max_body_bytes`` (read in chunks, so a huge body
    is refused before it is held), 400 when it is not JSON."""

    async def read_json(request) -> Any:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body_bytes:
            raise RequestError(413, f"request body of {size} bytes, more than the limit of {max_body_bytes}")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise RequestError(413, f"request body over the limit of {max_body_bytes} bytes")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(400, f"the body is not valid JSON: {e}") from None

    return read_json


class RewardService:
    """What a reward server does, apart from HTTP: the batcher, the encoders and the answers of each route.

    Why a class: the routes stay thin (read the body, call one method, wrap the answer), and what a
    request's answer holds (the combined reward, a distribution's spread, the health counters) is read and
    tested in one place instead of in closures inside the app factory.
    """

    def __init__(self, model: Any, options: ServeOptions | None = None, *, name: str = "") -> None:
        opts = options or ServeOptions()
        self.name = name
        self.attributes = list(model.attributes)
        # mean_var / rating_ce: the reward is a mean, served with its spread
        self.distribution = model.distribution
        self.weights = None
        if opts.combine is not None and self.distribution is not None:
            raise ValueError(f"combine does not apply to a {self.distribution.kind} model: its reward is the "
                             f"predicted mean, read from the outputs {self.attributes} by the distribution")
        if opts.combine is not None:
            self.weights = torch.tensor(list(opts.combine), dtype=torch.float32)
            if self.weights.numel() != len(self.attributes):
                raise ValueError(f"combine has {self.weights.numel()} weights for the heads {self.attributes}")
        # the model's featurizer settings, keeping a too-long response's end instead of refusing it
        self.feat = Featurizer(model.tokenizer, model.max_length, keep_response_end=True)
        self.queries = QueryEncoder(self.feat)
        self.limits = Limits(opts.max_items, None)  # no character limit: texts are truncated, the body is bounded
        self.batcher = Batcher(model, max_sequences=opts.max_batch_sequences, max_wait_ms=opts.max_wait_ms,
                               batch_size=opts.batch_size, max_tokens=opts.max_tokens)
        self.auth = BearerAuth(opts.api_key) if opts.api_key else None
        self.read_json = body_reader(opts.max_body_bytes)

    # -- reading the model's raw outputs (N, heads) -------------------------------------------------
    def read(self, out: torch.Tensor) -> tuple[list[float], dict[str, list]]:
        """(rewards, spread): the reward per sequence, and a distributional model's ``std`` (a rating model's
        ``probs`` too) read from the same pass over the outputs; the spread is {} for a scalar model."""
        if self.distribution is None:
            rewards = out @ self.weights if self.weights is not None else out[:, 0]
            return rewards.tolist(), {}
        read = self.distribution.read(out)
        spread = {"std": read["std"].tolist()}
        if "probs" in read:
            spread["probs"] = [dict(zip(self.attributes, row)) for row in read["probs"].tolist()]
        return read["reward"].tolist(), spread

    def heads_of(self, out: torch.Tensor) -> list[dict[str, float]]:
        return [dict(zip(self.attributes, row)) for row in out.tolist()]

    # -- the routes' answers --------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        b, feat = self.batcher, self.feat
        return {"status": "ok", "model": self.name, "attributes": self.attributes, "max_length": feat.max_length,
                "batches": b.batches, "sequences": b.sequences, "model_seconds": round(b.model_seconds, 3),
                "encode_seconds": round(b.encode_seconds, 3),
                "truncated": {"prompts": feat.truncated_prompts, "responses": feat.truncated_responses},
                "distribution": None if self.distribution is None else self.distribution.kind,
                **_rejections(self.auth)}

    async def get_reward(self, request: Any) -> dict[str, Any]:
        """OpenRLHF's ``/get_reward``: ``{"rewards", "scores", "extra_logs"}`` (+ ``std`` of a distribution)."""
        with self.batcher.arriving():  # a batch being gathered waits for a request being read
            items = parse_openrlhf(await self.read_json(request), self.limits)
        self.queries.check_items(items)  # a template-less model's 422 for a query that lacks its prompt
        out = await self.batcher.score(items, self.queries.encode_many, lambda i: query_misfit(self.feat, i))
        rewards, spread = self.read(out)
        if spread:  # the spread beside the reward, and in the logs an RL loop keeps
            std = spread["std"]
            return {"rewards": rewards, "scores": rewards, "std": std, "extra_logs": {"reward_std": std}}
        logs = {a: out[:, i].tolist() for i, a in enumerate(self.attributes)} if len(self.attributes) > 1 else {}
        return {"rewards": rewards, "scores": rewards, "extra_logs": logs}

    async def score(self, request: Any) -> dict[str, Any] | list[dict[str, Any]]:
        """``/score``: a row ``{"reward", "heads"}`` (+ ``std``, ``probs``) per item, a list for a list."""
        with self.batcher.arriving():
            items, many = parse_plain(await self.read_json(request), self.limits)
        out = await self.batcher.score(items, lambda batch: plain_sequences(self.feat, batch),
                                       lambda i: plain_misfit(self.feat, i))
        rewards, spread = self.read(out)
        rows = [{"reward": r, "heads": h} for r, h in zip(rewards, self.heads_of(out))]
        for name, values in spread.items():
            for row, v in zip(rows, values):
                row[name] = v
        return rows if many else rows[0]


def create_app(model: Any, options: ServeOptions | None = None, *, name: str = "") -> Any:
    """A FastAPI app serving ``model``: a :class:`~rmlib.models.RewardModel` scores (``/score``,
    ``/get_reward``, through a :class:`RewardService`), a :class:`~rmlib.models.JustifierModel` generates
    (``/v1/chat/completions``)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise _install_hint() from e
    from rmlib.models.causal import JustifierModel

    if isinstance(model, JustifierModel):
        return create_chat_app(model, options, name=name)
    service = RewardService(model, options, name=name)
    batcher = service.batcher

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="rmlib reward server", lifespan=lifespan, **_guarded(service.auth))
    app.state.batcher = batcher
    app.state.service = service

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ChatError)
    async def chat_error(request: Request, exc: ChatError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.post("/v1/chat/completions")
    async def chat_completions():
        raise not_generative_error(name)

    @app.get("/health")
    async def health():
        return service.health()

    @app.post("/get_reward")
    async def get_reward(request: Request):
        return JSONResponse(await service.get_reward(request))

    @app.post("/score")
    async def score(request: Request):
        return JSONResponse(await service.score(request))

    return app


def create_chat_app(model: Any, options: ServeOptions | None = None, *, name: str = "") -> Any:
    """A FastAPI app generating with ``model`` (a :class:`~rmlib.models.JustifierModel`, a causal LM):
    OpenAI's ``POST /v1/chat/completions`` and ``GET /v1/models`` (:mod:`rmlib.serve.chat`), and
    ``GET /health``; the reward routes answer a 404 saying this model generates."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    opts = options or ServeOptions()
    name = name or "model"
    gen = Generator(model, max_batch=opts.max_batch_sequences, batch_size=opts.batch_size,
                    max_pending=opts.max_pending, max_wait_ms=opts.max_wait_ms)

    @asynccontextmanager
    async def lifespan(app):
        await gen.start()
        yield
        await gen.stop()

    # a refused token in OpenAI's error shape, as an OpenAI client expects it
    auth = BearerAuth(opts.api_key, lambda status, message: ChatError(
        status, message, code="invalid_api_key")) if opts.api_key else None
    app = FastAPI(title="rmlib generative judge server", lifespan=lifespan, **_guarded(auth))
    app.state.generator = gen

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)

    add_chat_routes(app, model, gen, name=name, read_json=body_reader(opts.max_body_bytes),
                    max_new_tokens=opts.max_new_tokens, max_messages=opts.max_items, max_chars=opts.max_chars)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": name, "kind": "generative judge (causal LM)", "max_length": model.max_length,
                "max_new_tokens": opts.max_new_tokens, "completions": gen.completions, "batches": gen.batches,
                "generated_tokens": gen.generated_tokens, "pending": gen.pending,
                "model_seconds": round(gen.model_seconds, 3), **_rejections(auth)}

    @app.post("/score")
    @app.post("/get_reward")
    async def no_rewards():
        raise RequestError(404, f"this server serves the generative judge {name!r} (a causal LM), which writes "
                                "verdicts and gives no scalar reward: POST /v1/chat/completions")

    return app


def serve(model_path: str, *, host: str = "127.0.0.1", port: int = 8000, dtype: str = "float32",
          device: str | None = None, max_length: int | None = None, trust_remote_code: bool = False,
          attn_implementation: str | None = None, options: ServeOptions | None = None,
          log_level: str = "info", served_name: str | None = None, reward_token: str = "auto") -> None:
    """Load a model and serve it until interrupted (``rmlib serve``): a reward model's scores, or a causal
    LM's (a Pairwise Justifier's) chat completions. ``served_name`` is the name clients send as
    ``model`` (default: ``model_path``)."""
    try:
        import uvicorn
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise _install_hint() from e
    from rmlib.io import resolve_model
    from rmlib.models import JustifierModel, RewardModel, is_causal_lm_dir

    try:
        generative = is_causal_lm_dir(resolve_model(model_path))
    except (OSError, ValueError):
        generative = False
    cls = JustifierModel if generative else RewardModel  # a causal LM generates; anything else scores
    extra = {} if generative else {"reward_token": reward_token}  # where a reward model reads its reward
    model = cls.from_pretrained(model_path, dtype=dtype, max_length=max_length, trust_remote_code=trust_remote_code,
                                attn_implementation=attn_implementation, **extra)
    target = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(target).eval()
    uvicorn.run(create_app(model, options, name=served_name or str(model_path)), host=host, port=port,
                log_level=log_level)
