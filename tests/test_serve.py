"""The reward server on a real port: same scores as RewardModel.score, batching under concurrency,
OpenRLHF's protocol, bad requests answered with 4xx while the server keeps serving."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import torch

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from rmlib.models import RewardModel  # noqa: E402
from rmlib.serve import ServeOptions, create_app  # noqa: E402

PROMPTS = ["What is the capital of France?", "Sort 3 1 2.", "Say hi", "Convert 10 meters to feet, please."]
RESPONSES = ["Paris.", "1 2 3", "hi there, how are you doing today?", "About 32.8 feet."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app):
    """uvicorn serving ``app`` on a free loopback port in a thread; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def llama(tiny_llama):
    return RewardModel.from_pretrained(tiny_llama, max_length=256).eval()


@pytest.fixture(scope="module")
def server(llama):
    app = create_app(llama, ServeOptions(max_wait_ms=10, max_items=64, max_chars=2000, max_body_bytes=200_000))
    with running(app) as url:
        yield url, app


def rendered(model, prompt, response):
    return model.tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                                {"role": "assistant", "content": response}], tokenize=False)


def test_plain_requests_score_as_reward_model_score(server, llama):
    url, _ = server
    expected = llama.score(PROMPTS, RESPONSES)
    single = httpx.post(f"{url}/score", json={"prompt": PROMPTS[0], "response": RESPONSES[0]}).json()
    assert single["reward"] == pytest.approx(expected[0].item(), abs=1e-5)
    assert single["heads"] == {"reward": pytest.approx(expected[0].item(), abs=1e-5)}
    many = httpx.post(f"{url}/score", json=[{"prompt": p, "response": r} for p, r in zip(PROMPTS, RESPONSES)]).json()
    torch.testing.assert_close(torch.tensor([m["reward"] for m in many]), expected, atol=1e-5, rtol=0)
    msgs = httpx.post(f"{url}/score", json={"messages": [{"role": "user", "content": PROMPTS[1]},
                                                         {"role": "assistant", "content": RESPONSES[1]}]}).json()
    assert msgs["reward"] == pytest.approx(expected[1].item(), abs=1e-5)
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["attributes"] == ["reward"]


def test_openrlhf_protocol(server, llama):
    url, _ = server
    expected = llama.score(PROMPTS, RESPONSES)
    queries = [rendered(llama, p, r) for p, r in zip(PROMPTS, RESPONSES)]
    prompts = [llama.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                   add_generation_prompt=True) for p in PROMPTS]
    for body in ({"query": queries}, {"query": queries, "prompts": prompts, "labels": ["x"] * 4},
                 # generated text as OpenRLHF decodes it: the end-of-turn token may be missing or padded
                 {"query": [q.removesuffix("<|end|>") for q in queries]},
                 {"query": [q + "<pad><pad>" for q in queries]}):
        out = httpx.post(f"{url}/get_reward", json=body).json()
        assert set(out) == {"rewards", "scores", "extra_logs"}
        torch.testing.assert_close(torch.tensor(out["rewards"]), expected, atol=1e-5, rtol=0)
        assert out["scores"] == out["rewards"]


def test_cut_off_generations_keep_their_trailing_whitespace(server, llama):
    """A generation cut off before its end token (OpenRLHF's max length) that ends in " " or "\\n" is
    scored as that text, as RewardModel.score scores it: only the end-of-turn text and pads are removed,
    never the response's own whitespace. Tolerance 1e-5 (same tokens, other batch composition)."""
    url, _ = server
    cut = ["Paris is the ", "1 2\n", "hi there,\n\n", "About 32.8 feet. \n "]
    prompts = PROMPTS[:len(cut)]
    expected = llama.score(prompts, cut)
    stripped = llama.score(prompts, [r.rstrip() for r in cut])
    assert (expected - stripped).abs().min() > 1e-4  # the whitespace changes the reward: the check can fail
    header = [rendered(llama, p, "X").split("X")[0] for p in prompts]  # rendering up to the assistant's text
    queries = [h + r for h, r in zip(header, cut)]
    for body in ({"query": queries},
                 {"query": [q + "<pad><pad>" for q in queries]},  # a padded batch, decoded with its pads
                 {"query": queries, "prompts": header}):
        out = httpx.post(f"{url}/get_reward", json=body)
        assert out.status_code == 200, out.text
        torch.testing.assert_close(torch.tensor(out.json()["rewards"]), expected, atol=1e-5, rtol=0)
    # the same texts followed by their end token: still scored with the whitespace before it
    ended = httpx.post(f"{url}/get_reward", json={"query": [rendered(llama, p, r) for p, r in zip(prompts, cut)]})
    torch.testing.assert_close(torch.tensor(ended.json()["rewards"]), expected, atol=1e-5, rtol=0)


def test_fifty_concurrent_clients_get_their_own_answers_in_order(server, llama):
    url, app = server
    n = 50
    items = [[{"prompt": f"{PROMPTS[(i + k) % 4]} #{i}", "response": RESPONSES[(i * 3 + k) % 4] + " x" * (i % 7)}
              for k in range(1 + i % 3)] for i in range(n)]
    flat = [it for req in items for it in req]
    expected = llama.score([it["prompt"] for it in flat], [it["response"] for it in flat])
    before = app.state.batcher.batches
    barrier = threading.Barrier(n)

    def client(i):
        with httpx.Client(timeout=60) as c:
            barrier.wait()
            return c.post(f"{url}/score", json=items[i]).json()

    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(client, range(n)))
    got = torch.tensor([a["reward"] for ans in answers for a in ans])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert app.state.batcher.batches - before < n, "concurrent requests were not batched"


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe", 400, "not valid JSON"),
    (json.dumps({"prompt": 3, "response": "a"}).encode(), 422, "prompt must be a string"),
    (json.dumps({"prompt": "q", "response": ["a"]}).encode(), 422, "response must be a string"),
    (json.dumps({"prompt": "q"}).encode(), 422, "must have `prompt` and `response`"),
    (json.dumps([]).encode(), 422, "empty list"),
    (json.dumps(7).encode(), 422, "must be an object"),
    (json.dumps({"messages": [{"role": "user", "content": "q"}]}).encode(), 422, "assistant"),
    (json.dumps({"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]}).encode(),
     422, "role must be one of"),
    (json.dumps([{"prompt": "q", "response": "a"}] * 65).encode(), 413, "65 items"),
    (json.dumps({"prompt": "q", "response": "x" * 250_000}).encode(), 413, "request body"),
])
def test_bad_plain_requests_get_4xx_and_the_server_survives(server, body, status, message):
    url, _ = server
    r = httpx.post(f"{url}/score", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and message in r.json()["error"], r.text
    assert httpx.post(f"{url}/score", json={"prompt": "q", "response": "a"}).status_code == 200


def _kept_end_reward(model, prompt: str, response: str) -> float:
    """The reward of BOS + the last tokens of the response's turn, built from the chat template by hand and
    scored by transformers alone: what the server must give a response longer than max_length."""
    tok = model.tokenizer
    user = [{"role": "user", "content": prompt}]
    p_text = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(user + [{"role": "assistant", "content": response}], tokenize=False)
    turn = tok(full[len(p_text):], add_special_tokens=False)["input_ids"]
    ids = [tok.bos_token_id] + turn[-(model.max_length - 1):]
    assert len(ids) == model.max_length and len(turn) > model.max_length
    with torch.no_grad():
        return model._hf(input_ids=torch.tensor([ids])).logits[0, 0].item()


def test_texts_longer_than_max_length_are_truncated_as_training_does_never_refused(server, llama):
    """OpenRLHF's client gives up after 5 failed tries and leaves the reward None, so a long text is
    truncated, never a 413: a long prompt is cut from the left (as RewardModel.score cuts it), a response
    longer than max_length=256 keeps its end (BOS + its last tokens, checked against transformers on ids
    built by hand, 1e-4), through /score and /get_reward; /health counts both kinds. The character limit
    (2000 here) no longer applies to reward requests: only the body's byte limit gives a 413."""
    url, _ = server
    before = httpx.get(f"{url}/health").json()["truncated"]
    long_prompt = "Tell me about " + "the sea and the sky " * 120 + "in one word."
    want = llama.score([long_prompt], ["Blue."])
    got = httpx.post(f"{url}/score", json={"prompt": long_prompt, "response": "Blue."})
    assert got.status_code == 200, got.text
    assert got.json()["reward"] == pytest.approx(want[0].item(), abs=1e-5)
    long_response = " ".join(f"ka{i % 7} lo mi" for i in range(220)) + " and that is all."
    kept = _kept_end_reward(llama, "q", long_response)
    start = _kept_end_reward(llama, "q", long_response.replace("that is all", "nothing more"))
    assert abs(kept - start) > 1e-4  # the reward depends on the end that is kept: the check can fail
    plain = httpx.post(f"{url}/score", json={"prompt": "q", "response": long_response})
    assert plain.status_code == 200, plain.text
    assert plain.json()["reward"] == pytest.approx(kept, abs=1e-4)
    for body in ({"query": [rendered(llama, "q", long_response)]},
                 {"query": [rendered(llama, "q", long_response).removesuffix("<|end|>")]}):  # cut off unended
        rl = httpx.post(f"{url}/get_reward", json=body)
        assert rl.status_code == 200, rl.text
        assert rl.json()["rewards"][0] == pytest.approx(kept, abs=1e-4)
    after = httpx.get(f"{url}/health").json()["truncated"]
    assert after["responses"] - before["responses"] == 3
    assert after["prompts"] - before["prompts"] == 4  # the long prompt, and the prompts of the three cut responses
    with pytest.raises(Exception, match="does not fit"):  # RewardModel.score itself is unchanged: it refuses
        llama.score(["q"], [long_response])
    many_chars = httpx.post(f"{url}/score", json={"prompt": "q", "response": "a" * 2001})
    assert many_chars.status_code == 200, many_chars.text


@pytest.mark.parametrize("body, status, message", [
    ({"prompts": ["a"]}, 422, "with `query`"),
    ({"query": 5}, 422, "`query` must be a list"),
    ({"query": ["a", 3]}, 422, "query[1] must be a string"),
    ({"query": ["a", "b"], "prompts": ["a"]}, 422, "one prompt per query"),
    ({"query": ["a"] * 65}, 413, "65 queries"),
])
def test_bad_openrlhf_requests_get_4xx(server, body, status, message):
    url, _ = server
    r = httpx.post(f"{url}/get_reward", json=body)
    assert r.status_code == status and message in r.json()["error"], r.text
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_multi_head_model_returns_every_head_and_combines(tiny_llama_5):
    rm = RewardModel.from_pretrained(tiny_llama_5).eval()
    expected = rm.score(PROMPTS, RESPONSES)
    weights = [1.0, 0.5, 0.0, 0.0, -1.0]
    with running(create_app(rm, ServeOptions(combine=weights))) as url:
        out = httpx.post(f"{url}/score", json=[{"prompt": p, "response": r} for p, r in zip(PROMPTS, RESPONSES)]).json()
        rl = httpx.post(f"{url}/get_reward", json={"query": [rendered(rm, p, r) for p, r in zip(PROMPTS, RESPONSES)]})
    heads = torch.tensor([[o["heads"][a] for a in rm.attributes] for o in out])
    torch.testing.assert_close(heads, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor([o["reward"] for o in out]), expected @ torch.tensor(weights),
                               atol=1e-5, rtol=0)
    logs = rl.json()["extra_logs"]
    assert list(logs) == rm.attributes
    torch.testing.assert_close(torch.tensor(logs["verbosity"]), expected[:, 4], atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def minilm():
    return RewardModel.from_pretrained("minilm-l6", attributes=["reward"]).eval()


def test_encoder_model_serves_plain_requests(minilm):
    expected = minilm.score(PROMPTS[:2], RESPONSES[:2])
    with running(create_app(minilm)) as url:
        out = httpx.post(f"{url}/score", json=[{"prompt": p, "response": r} for p, r in zip(PROMPTS, RESPONSES)][:2])
    torch.testing.assert_close(torch.tensor([o["reward"] for o in out.json()]), expected, atol=1e-5, rtol=0)


def test_openrlhf_queries_on_a_model_without_chat_template(minilm):
    """MiniLM has no chat template: a query is raw prompt + response text. With `prompts`, prompts[i] is the
    prompt (scored as RewardModel.score scores a string prompt) and the rest of the query the response;
    without, the whole query is the response with an empty prompt. Tolerance 1e-5 (same encoding, other
    batch composition)."""
    tok = minilm.tokenizer
    assert not tok.chat_template
    responses = [" " + r for r in RESPONSES]  # OpenRLHF's query is prompt + generated text, as generated
    queries = [p + r for p, r in zip(PROMPTS, responses)]
    with_prompt = minilm.score(PROMPTS, responses)
    whole = minilm.score([[]] * len(queries), queries)
    assert (with_prompt - whole).abs().max() > 1e-3  # the two rules score differently: each is checked
    with running(create_app(minilm)) as url:
        def rewards(body):
            r = httpx.post(f"{url}/get_reward", json=body)
            assert r.status_code == 200, r.text
            return torch.tensor(r.json()["rewards"])

        torch.testing.assert_close(rewards({"query": queries, "prompts": PROMPTS}), with_prompt, atol=1e-5, rtol=0)
        torch.testing.assert_close(rewards({"query": queries}), whole, atol=1e-5, rtol=0)
        # generated text as OpenRLHF decodes it, with this tokenizer's end and pad tokens: removed
        trailing = [q + tok.sep_token + tok.pad_token * 2 for q in queries]
        torch.testing.assert_close(rewards({"query": trailing, "prompts": PROMPTS}), with_prompt, atol=1e-5, rtol=0)
        torch.testing.assert_close(rewards({"query": trailing}), whole, atol=1e-5, rtol=0)
        bad = httpx.post(f"{url}/get_reward", json={"query": queries, "prompts": [PROMPTS[0], "Another prompt"]
                                                    + PROMPTS[2:]})
        assert bad.status_code == 422 and "query[1] does not begin with prompts[1]" in bad.json()["error"], bad.text
        assert httpx.get(f"{url}/health").json()["status"] == "ok"


@pytest.mark.slow  # a CLI subprocess (about 10 s)
def test_rmlib_serve_command(tiny_llama):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rmlib", "serve", str(tiny_llama), "--port", str(port),
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.time() < deadline, "rmlib serve did not come up"
                time.sleep(0.5)
        assert health["status"] == "ok"
        r = httpx.post(f"http://127.0.0.1:{port}/score", json={"prompt": "q", "response": "a"}).json()
        assert isinstance(r["reward"], float)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_lone_request_does_not_wait_for_company(llama):
    import asyncio

    from rmlib.serve import Batcher

    seq = llama.featurizer().encode([{"role": "user", "content": "q"}], "a")

    async def one() -> float:
        batcher = Batcher(llama, max_wait_ms=2000)
        await batcher.start()
        t0 = time.perf_counter()
        await batcher.score([seq])
        elapsed = time.perf_counter() - t0
        await batcher.stop()
        return elapsed

    assert asyncio.run(one()) < 1.0  # far below max_wait_ms: nothing else was arriving


def test_batched_tokenizing_matches_one_at_a_time_and_a_misfit_fails_alone(llama):
    """The worker tokenizes every gathered request in one call (repeated prompts rendered once); a
    request with an item that cannot fit gets its own 413, and one that makes the encoder raise
    (a chat template refusing its roles) its own error, while the others in the batch are scored."""
    import asyncio

    from rmlib.serve import Batcher, RequestError
    from rmlib.serve.protocol import plain_misfit, plain_sequences

    feat = llama.featurizer()
    msgs = [[{"role": "user", "content": p}] for p in PROMPTS]
    items = [(msgs[k % 2], RESPONSES[k]) for k in range(4)]  # two prompts, two responses each
    assert [s.ids for s in plain_sequences(feat, items)] == [feat.encode(m, r).ids for m, r in items]
    requests = [items[:2], [items[2], (msgs[3], "ka lo mi " * 220)], [(msgs[0], "boom")], items[2:]]

    def encode(batch):
        if any(r == "boom" for _, r in batch):
            raise ValueError("the template refuses this conversation")
        return plain_sequences(feat, batch)

    async def run():
        batcher = Batcher(llama, max_wait_ms=50)
        await batcher.start()
        answers = await asyncio.gather(*(batcher.score(r, encode, lambda i: plain_misfit(feat, i))
                                         for r in requests), return_exceptions=True)
        await batcher.stop()
        return answers, batcher.batches

    (first, bad, boom, last), batches = asyncio.run(run())
    assert batches == 1  # all four were gathered into one model batch
    assert isinstance(bad, RequestError) and bad.status == 413 and str(bad).startswith("item 1:")
    assert isinstance(boom, ValueError) and "refuses" in str(boom)
    expected = llama.score([m for m, _ in items], [r for _, r in items])
    torch.testing.assert_close(torch.cat([first, last])[:, 0], expected, atol=1e-5, rtol=0)


def test_bearer_token_guards_every_route_but_health_and_counts_refusals(llama, tmp_path):
    """With an API key, every route but /health needs `Authorization: Bearer <key>`: no header or another
    scheme is a 401 counted as `missing`, another token a 401 counted as `wrong`, both with
    WWW-Authenticate: Bearer; the right token scores as RewardModel.score (1e-5). The interactive docs
    are off (they are not routes a dependency guards)."""
    from rmlib.serve.auth import read_api_key

    key_file = tmp_path / "key"
    key_file.write_text("s3cret-token\n")
    key = read_api_key(key_file)
    assert key == "s3cret-token"
    expected = llama.score(PROMPTS[:2], RESPONSES[:2])
    items = [{"prompt": p, "response": r} for p, r in zip(PROMPTS[:2], RESPONSES[:2])]
    with running(create_app(llama, ServeOptions(api_key=key))) as url:
        health = httpx.get(f"{url}/health")
        assert health.status_code == 200 and health.json()["unauthorized"] == {"missing": 0, "wrong": 0}
        for headers, reason in (({}, "missing"), ({"Authorization": "Basic czNjcmV0"}, "missing"),
                                ({"Authorization": "Bearer"}, "missing"),
                                ({"Authorization": "Bearer s3cret-tokeN"}, "wrong"),
                                ({"Authorization": "Bearer s3cret"}, "wrong")):
            r = httpx.post(f"{url}/score", json=items, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (headers, r.text)
            assert ("missing bearer token" if reason == "missing" else "wrong bearer token") in r.json()["error"]
        for path in ("/get_reward", "/v1/chat/completions"):  # every route, even one that only answers a 404
            assert httpx.post(f"{url}{path}", json={"query": ["x"]}).status_code == 401
        assert httpx.get(f"{url}/docs").status_code == 404 and httpx.get(f"{url}/openapi.json").status_code == 404
        good = {"Authorization": "Bearer s3cret-token"}
        ok = httpx.post(f"{url}/score", json=items, headers=good)
        assert ok.status_code == 200, ok.text
        torch.testing.assert_close(torch.tensor([o["reward"] for o in ok.json()]), expected, atol=1e-5, rtol=0)
        rl = httpx.post(f"{url}/get_reward", json={"query": [rendered(llama, p, r) for p, r in
                                                            zip(PROMPTS[:2], RESPONSES[:2])]}, headers=good)
        torch.testing.assert_close(torch.tensor(rl.json()["rewards"]), expected, atol=1e-5, rtol=0)
        assert httpx.get(f"{url}/health").json()["unauthorized"] == {"missing": 5, "wrong": 2}
    with running(create_app(llama)) as url:  # no key: no guard, and no counter in /health
        assert httpx.post(f"{url}/score", json=items[0]).status_code == 200
        assert "unauthorized" not in httpx.get(f"{url}/health").json()


def test_api_key_file_errors_name_the_file_before_the_model_loads(tmp_path, capsys):
    from rmlib.cli import main
    from rmlib.config import ConfigError
    from rmlib.serve.auth import read_api_key

    empty, multi = tmp_path / "empty.key", tmp_path / "two.key"
    empty.write_text(" \n")
    multi.write_text("one\ntwo\n")
    for path, message in ((tmp_path / "absent.key", "cannot read the key"), (empty, "the file is empty"),
                          (multi, "whitespace inside")):
        with pytest.raises(ConfigError, match=message) as e:
            read_api_key(path)
        assert str(path) in str(e.value)
    # the CLI reads the file first: a one-line error naming it, status 2, and no model is looked for
    assert main(["serve", str(tmp_path / "no-such-model"), "--api-key-file", str(empty)]) == 2
    err = capsys.readouterr().err
    assert f"--api-key-file {empty}: the file is empty" in err and "no-such-model" not in err


@pytest.mark.parametrize("kind", ["mean_var", "rating_ce"])
def test_a_distributional_model_serves_its_mean_with_the_spread(tiny_llama, kind):
    """/score rows and /get_reward carry ``std`` beside the reward (a rating model's ``probs`` too), equal to
    RewardModel.score_outputs; the head is random so that the spread differs between responses."""
    from rmlib.models.distribution import MeanVar, RatingCE, apply_distribution

    dist = MeanVar() if kind == "mean_var" else RatingCE()
    rm = RewardModel.from_pretrained(tiny_llama, attributes=dist.output_names, max_length=256).eval()
    apply_distribution(rm.config, rm.head, dist)
    with torch.no_grad():
        rm.head.weight.normal_(0, 2.0, generator=torch.Generator().manual_seed(0))
    expected = rm.score_outputs(PROMPTS, RESPONSES)
    assert float(expected["std"].std()) > 1e-3  # responses differ in spread: a constant std would pass anything
    with running(create_app(rm, ServeOptions(max_wait_ms=5))) as url:
        rows = httpx.post(f"{url}/score", json=[{"prompt": p, "response": r} for p, r in zip(PROMPTS, RESPONSES)]).json()
        rl = httpx.post(f"{url}/get_reward", json={"query": [rendered(rm, p, r) for p, r in zip(PROMPTS, RESPONSES)]}
                        ).json()
        health = httpx.get(f"{url}/health").json()
    for name in ("reward", "std"):
        torch.testing.assert_close(torch.tensor([row[name] for row in rows]), expected[name].float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(rl["rewards"]), expected["reward"].float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(rl["std"]), expected["std"].float(), atol=1e-5, rtol=0)
    assert rl["extra_logs"] == {"reward_std": rl["std"]} and health["distribution"] == kind
    assert set(rows[0]["heads"]) == set(dist.output_names)
    if kind == "rating_ce":
        probs = torch.tensor([[row["probs"][a] for a in dist.output_names] for row in rows])
        torch.testing.assert_close(probs, expected["probs"].float(), atol=1e-5, rtol=0)
    else:
        assert "probs" not in rows[0]
    with pytest.raises(ValueError, match="combine does not apply"):
        create_app(rm, ServeOptions(combine=[1.0] * len(dist.output_names)))
