"""`rmlib serve` of a Pairwise Justifier (a causal LM): OpenAI's /v1/chat/completions on a real uvicorn server
on a loopback port, queried with httpx. Greedy answers equal `generate`, token caps and stop sequences hold,
concurrent requests are batched into the same answers, bad requests get OpenAI-style 4xx errors while the
server keeps serving, and a reward-model server says it does not generate."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from rmlib.models import JustifierModel, RewardModel  # noqa: E402
from rmlib.serve import ServeOptions, create_app  # noqa: E402
from rmlib.testing import build_tiny_causal_lm  # noqa: E402
from tests.test_serve import running  # noqa: E402

NAME = "tiny-justifier"
QUESTIONS = ["What is 2 + 3?", "Sort 3 1 2.", "Say hi", "Convert 10 meters to feet, please."]


@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory, tiny_llama):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny_causal"), tiny_llama)


@pytest.fixture(scope="module")
def judge(tiny_causal):
    return JustifierModel.from_pretrained(tiny_causal, max_length=256).eval()


@pytest.fixture(scope="module")
def server(judge):
    opts = ServeOptions(max_wait_ms=20, max_new_tokens=48, max_items=8, max_chars=2000, max_body_bytes=50_000)
    with running(create_app(judge, opts, name=NAME)) as url:
        yield url


def expected(judge, messages, max_new_tokens):
    """What transformers' own generate gives (greedy) on the chat template's ids, decoded as the server does."""
    tok = judge.tokenizer
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    with torch.no_grad():
        out = judge._hf.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
    new = out[0, len(ids):].tolist()
    if tok.eos_token_id in new:
        new = new[: new.index(tok.eos_token_id)]
    return ids, new, tok.decode(new, skip_special_tokens=True)


def chat(url, messages, **kw):
    return httpx.post(f"{url}/v1/chat/completions", json={"model": NAME, "messages": messages, **kw}, timeout=120)


def test_answer_shape_and_greedy_equals_generate(server, judge):
    msgs = [{"role": "system", "content": "You judge answers."}, {"role": "user", "content": QUESTIONS[0]}]
    ids, new, text = expected(judge, msgs, 12)
    r = chat(server, msgs, max_tokens=12, temperature=0)
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"id", "object", "created", "model", "choices", "usage"}
    assert out["object"] == "chat.completion" and out["model"] == NAME and out["id"].startswith("chatcmpl-")
    assert isinstance(out["created"], int)
    (choice,) = out["choices"]
    assert choice["index"] == 0 and choice["message"] == {"role": "assistant", "content": text}
    assert choice["finish_reason"] == ("length" if len(new) == 12 else "stop")
    assert out["usage"] == {"prompt_tokens": len(ids), "completion_tokens": len(new),
                            "total_tokens": len(ids) + len(new)}
    again = chat(server, msgs, max_tokens=12, temperature=0).json()  # greedy is deterministic
    assert again["choices"][0]["message"]["content"] == text
    # content given as OpenAI text parts reads the same
    parts = [msgs[0], {"role": "user", "content": [{"type": "text", "text": QUESTIONS[0][:5]},
                                                   {"type": "text", "text": QUESTIONS[0][5:]}]}]
    assert chat(server, parts, max_tokens=12, temperature=0).json()["choices"][0]["message"]["content"] == text


def test_token_caps_and_stop_sequences(server, judge):
    msgs = [{"role": "user", "content": QUESTIONS[3]}]
    _, new, text = expected(judge, msgs, 48)
    assert len(new) >= 6, "the tiny model must write a few tokens for this test"
    short = chat(server, msgs, max_tokens=3, temperature=0).json()
    assert short["usage"]["completion_tokens"] == 3 and short["choices"][0]["finish_reason"] == "length"
    assert short["choices"][0]["message"]["content"] == judge.tokenizer.decode(new[:3], skip_special_tokens=True)
    default = chat(server, msgs, temperature=0).json()  # no max_tokens: the server's cap (48)
    assert default["choices"][0]["message"]["content"] == text
    assert default["usage"]["completion_tokens"] == len(new) <= 48
    stop = text[len(text) // 2: len(text) // 2 + 2]
    assert stop.strip(), text
    cut = chat(server, msgs, max_tokens=48, temperature=0, stop=[stop, "never-said"]).json()
    assert cut["choices"][0]["message"]["content"] == text[: text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["usage"]["completion_tokens"] < len(new)


def test_an_end_token_stops_the_completion(tiny_causal, judge):
    """A generation config with several end tokens (as Llama 3's): the completion ends at the first one
    generated, before max_tokens, with finish_reason "stop"."""
    msgs = [{"role": "user", "content": QUESTIONS[0]}]
    _, new, _ = expected(judge, msgs, 24)
    k = next(k for k in range(1, len(new)) if new[k] not in new[:k])  # a token first generated at position k
    model = JustifierModel.from_pretrained(tiny_causal, max_length=256).eval()
    model._hf.generation_config.eos_token_id = [model.tokenizer.eos_token_id, new[k]]
    with running(create_app(model, ServeOptions(max_new_tokens=24), name=NAME)) as url:
        out = chat(url, msgs, max_tokens=24, temperature=0).json()
    assert out["choices"][0]["finish_reason"] == "stop" and out["usage"]["completion_tokens"] == k
    assert out["choices"][0]["message"]["content"] == judge.tokenizer.decode(new[:k], skip_special_tokens=True)


def test_concurrent_requests_are_batched_into_the_same_answers(server, judge):
    """Requests that arrive together are generated in one left-padded batch (fewer batches than requests),
    each answer equal to its own greedy generate."""
    n = 12
    convs = [[{"role": "user", "content": f"{QUESTIONS[i % 4]} #{i}"}] for i in range(n)]
    caps = [4 + i % 5 for i in range(n)]
    want = [expected(judge, c, k)[2] for c, k in zip(convs, caps)]
    health = httpx.get(f"{server}/health").json()
    barrier = threading.Barrier(n)

    def client(i):
        with httpx.Client(timeout=120) as c:
            barrier.wait()
            return c.post(f"{server}/v1/chat/completions",
                          json={"model": NAME, "messages": convs[i], "max_tokens": caps[i], "temperature": 0}).json()

    with ThreadPoolExecutor(n) as pool:
        got = list(pool.map(client, range(n)))
    assert [g["choices"][0]["message"]["content"] for g in got] == want
    after = httpx.get(f"{server}/health").json()
    assert after["completions"] - health["completions"] == n
    assert after["batches"] - health["batches"] < n, "concurrent greedy requests were not batched"


def test_seeded_sampling_repeats(server):
    msgs = [{"role": "user", "content": QUESTIONS[1]}]
    a = chat(server, msgs, max_tokens=16, temperature=1.0, top_p=0.9, seed=7).json()
    b = chat(server, msgs, max_tokens=16, temperature=1.0, top_p=0.9, seed=7).json()
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]


def test_models_and_health(server, judge):
    models = httpx.get(f"{server}/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == [NAME]
    assert models["data"][0]["object"] == "model"
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["model"] == NAME and health["max_length"] == judge.max_length
    r = httpx.post(f"{server}/score", json={"prompt": "q", "response": "a"})
    assert r.status_code == 404 and "/v1/chat/completions" in r.json()["error"]


@pytest.mark.parametrize("body, status, param, message", [
    ({"model": NAME}, 400, "messages", "non-empty list"),
    ({"model": NAME, "messages": []}, 400, "messages", "non-empty list"),
    ({"model": NAME, "messages": [{"role": "robot", "content": "q"}]}, 400, "messages[0].role", "must be one of"),
    ({"model": NAME, "messages": [{"role": "user"}]}, 400, "messages[0]", "`role` and `content`"),
    ({"model": NAME, "messages": [{"role": "user", "content": 3}]}, 400, "messages[0].content", "must be a string"),
    ({"model": NAME, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400,
     "messages[0].content", "text part"),
    ({"model": NAME, "messages": [{"role": "user", "content": "q" * 2001}]}, 400, "messages[0].content",
     "2001 characters"),
    ({"model": NAME, "messages": [{"role": "user", "content": "q"}] * 9}, 400, "messages", "9 messages"),
    ({"model": NAME, "messages": [{"role": "user", "content": "q"}], "max_tokens": 49}, 400, "max_tokens",
     "limit of 48"),
    ({"model": NAME, "messages": [{"role": "user", "content": "q"}], "max_tokens": 0}, 400, "max_tokens",
     "positive integer"),
    ({"model": NAME, "messages": [{"role": "user", "content": "q"}], "max_completion_tokens": 100}, 400,
     "max_completion_tokens", "limit of 48"),
    ({"model": NAME, "messages": [{"role": "user", "content": "q"}], "n": 2}, 400, "n", "n=1"),
    ({"model": NAME, "messages": [{"role": "user", "content": "q"}], "stream": True}, 400, "stream", "not supported"),
    ({"model": NAME, "messages": [{"role": "user", "content": "q"}], "temperature": 3}, 400, "temperature",
     "out of range"),
    ({"model": NAME, "messages": [{"role": "user", "content": "q"}], "top_p": 0}, 400, "top_p", "out of range"),
    ({"model": NAME, "messages": [{"role": "user", "content": "q"}], "stop": ["a"] * 5}, 400, "stop", "up to 4"),
    ({"model": NAME, "messages": [{"role": "user", "content": "q"}], "seed": "x"}, 400, "seed", "integer"),
    ({"model": NAME, "messages": [{"role": "user", "content": "q"}], "logit_bias": {}}, 400, "logit_bias",
     "unsupported"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "q"}]}, 404, "model", "does not exist"),
    ({"model": NAME, "messages": [{"role": "user", "content": "ka lo mi " * 150}], "max_tokens": 48}, 400,
     "messages", "maximum context length is 256"),
    ([1, 2], 400, None, "JSON object"),
])
def test_bad_requests_get_openai_errors_and_the_server_survives(server, body, status, param, message):
    r = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param and message in err["message"]
    assert err["type"] == "invalid_request_error"
    ok = chat(server, [{"role": "user", "content": "q"}], max_tokens=2, temperature=0)
    assert ok.status_code == 200


@pytest.mark.parametrize("content, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (json.dumps({"model": NAME, "messages": [{"role": "user", "content": "x" * 60_000}]}).encode(), 413,
     "request body"),
])
def test_bodies_that_cannot_be_read(server, content, status, message):
    r = httpx.post(f"{server}/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert r.status_code == status and message in r.json()["error"]["message"], r.text


def test_a_reward_model_server_says_it_does_not_generate(tiny_llama):
    rm = RewardModel.from_pretrained(tiny_llama).eval()
    with running(create_app(rm, name="rm")) as url:
        r = httpx.post(f"{url}/v1/chat/completions", json={"model": "rm", "messages": [{"role": "user", "content": "q"}]})
        assert httpx.post(f"{url}/score", json={"prompt": "q", "response": "a"}).status_code == 200
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert err["code"] == "model_not_generative" and "does not generate" in err["message"]


@pytest.mark.slow  # a CLI subprocess (about 10 s)
def test_rmlib_serve_command_serves_a_justifier(tiny_causal):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.test_serve import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rmlib", "serve", str(tiny_causal), "--port", str(port),
                             "--device", "cpu", "--served-model-name", "judge", "--max-new-tokens", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": os.getcwd()})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                health = httpx.get(f"{url}/health", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.time() < deadline, "rmlib serve did not come up"
                time.sleep(0.5)
        assert health["status"] == "ok" and health["max_new_tokens"] == 8
        assert [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]] == ["judge"]
        r = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                       json={"model": "judge", "messages": [{"role": "user", "content": "q"}], "temperature": 0})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 8, r.text
        assert httpx.post(f"{url}/get_reward", json={"query": ["q"]}).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
