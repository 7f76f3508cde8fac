"""A fake LLM for the annotate tests: a small FastAPI app answering OpenAI's /v1/chat/completions.

Mocked because no LLM that writes valid annotations can run offline here; everything around it is real
(uvicorn on a loopback port, httpx, the journal, the files). It reads the pair's id (``pair-<n>`` in the
conversation) and answers with the candidate that holds ``GOOD-RESPONSE`` as the better one, so the tests
can check that positions are mapped back to the right response. ``faults`` maps a pair id to what the
server does on successive attempts for one (pair, position): ``"429"``, ``"500"``, ``"503"``, ``"html"``
(a 200 whose body is not JSON), ``"nojson"`` / ``"refuse"`` (a valid completion with unusable content),
``"first"`` (always names candidate 1: a position-biased judge), ``"ok"``. The last entry repeats.
Every answer sent is counted in ``state.sent``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

ANSWER = {"task_category": "factual question", "objectivity": "objective", "controversiality": "low",
          "desired_attributes": ["correct", "concise"],
          "annotation_guideline": "The response that states the right fact wins."}


def completion(content: str) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def fake_llm(faults: Callable[[int], list[str]] | None = None, latency: float = 0.0) -> FastAPI:
    app = FastAPI()
    app.state.sent = Counter()
    app.state.attempts = Counter()
    app.state.answered = Counter()  # (pair id, position of GOOD) -> 200 answers
    app.state.prompts = {}  # pair id -> the last user message it was asked with

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "fake", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        user = body["messages"][-1]["content"]
        pair = int(re.findall(r"pair-(\d+)", user)[-1])
        target = user[user.index(f"pair-{pair}"):]  # in-context examples come before the pair itself
        good_first = target.index("GOOD-RESPONSE") < target.index("BAD-RESPONSE")
        key = (pair, 1 if good_first else 2)
        app.state.prompts[pair] = user
        plan = faults(pair) if faults else ["ok"]
        step = plan[min(app.state.attempts[key], len(plan) - 1)]
        app.state.attempts[key] += 1
        app.state.sent[step] += 1
        if latency:
            await asyncio.sleep(latency)
        if step in ("429", "500", "503"):
            headers = {"Retry-After": "0"} if step == "429" else {}
            return JSONResponse({"error": {"message": step}}, status_code=int(step), headers=headers)
        if step == "html":
            return PlainTextResponse("<html>bad gateway</html>", status_code=200)
        app.state.answered[key] += 1
        if step == "nojson":
            return completion("Sure! I think the first one reads nicer overall.")
        if step == "refuse":
            return completion("I'm sorry, but I can't help with evaluating this conversation.")
        preferred = 1 if (good_first or step == "first") else 2
        return completion("```json\n" + json.dumps({**ANSWER, "preferred": preferred, "strength": 2}) + "\n```")

    return app
