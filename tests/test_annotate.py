"""`rmlib data annotate` against real HTTP servers on loopback ports: retries and accounting by counts against a
faulty server, a SIGKILLed run resumed with every pair annotated exactly once, both orders, the input label
kept for the consistency filter, the prompt templates, and a table of realistic LLM answers.

The LLM itself is a fake (tests/fake_llm.py: a FastAPI app under uvicorn), since no model that writes valid
annotations runs offline; the end-to-end run against `rmlib serve` of a real tiny causal LM is at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from rmlib.curation.annotate import AnnotateAborted, annotate_pairs, chosen_position  # noqa: E402
from rmlib.curation.answers import parse_answer  # noqa: E402
from rmlib.curation.journal import journal_path  # noqa: E402
from rmlib.curation.llm_client import chat_url, retry_after  # noqa: E402
from rmlib.curation.prompts import load_template  # noqa: E402
from rmlib.curation.rules import read_judge_file  # noqa: E402
from rmlib.data.judge import judge_input  # noqa: E402
from rmlib.data.schema import DataError  # noqa: E402
from tests.fake_llm import fake_llm  # noqa: E402
from tests.test_serve import free_port, running  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(backoff_base=0.01, backoff_max=0.05, timeout=20, deadline=60)


def write_pairs(path: Path, n: int) -> Path:
    """Pair i asks about pair-i; its chosen response is the GOOD one for even i and the BAD one for odd i."""
    with open(path, "w") as fh:
        for i in range(n):
            good, bad = f"GOOD-RESPONSE to {i}: Paris.", f"BAD-RESPONSE to {i}: Lyon."
            chosen, rejected = (good, bad) if i % 2 == 0 else (bad, good)
            fh.write(json.dumps({"prompt": [{"role": "user", "content": f"pair-{i}: what is the capital of France?"}],
                                 "chosen": chosen, "rejected": rejected, "strength": None, "votes": None,
                                 "meta": {"id": i}}) + "\n")
    return path


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def faults(i: int) -> list[str]:
    return {1: ["429", "ok"], 2: ["500", "500", "ok"], 3: ["nojson"], 5: ["html", "ok"]}.get(
        i % 6, ["503"] if i % 12 == 4 else ["refuse"] if i % 12 == 10 else ["ok"])


def test_retries_failures_and_garbage_are_counted_and_every_pair_accounted(tmp_path):
    src = write_pairs(tmp_path / "pairs.jsonl", 24)
    app = fake_llm(faults)
    with running(app) as url:
        rep = annotate_pairs(src, tmp_path / "out", endpoint=f"{url}/v1", model="fake", concurrency=4,
                             max_retries=2, **FAST).to_dict()
    sent = app.state.sent
    # what the server sent, per kind: 4 pairs with one 429, 4 with two 500s, 2 failing with 503 three times
    # (1 try + 2 retries), 4 with a non-JSON body once
    assert (sent["429"], sent["500"], sent["503"], sent["html"]) == (4, 8, 6, 4)
    req = rep["requests"]
    assert req["retried"] == {"bad_response": 4, "http_429": 4, "http_500": 8, "http_503": 4}
    assert req["failed"] == {"http_503": 2}
    assert req["attempts"] == sum(sent.values()) and req["answered"] == 24 - 2
    assert rep["removed"] == {"answer:no_json": 4, "answer:refusal": 2, "request:http_503": 2}
    assert rep["n_in"] == 24 and rep["n_out"] == 16 and rep["n_in"] == rep["n_out"] + sum(rep["removed"].values())
    assert rep["examples"]["answer:no_json"][0]["answer"].startswith("Sure!")
    # the LLM's verdict is the label: every written pair has the GOOD response as chosen, odd ids flipped
    out = rows(tmp_path / "out" / "data.jsonl")
    assert len(out) == 16 and all(r["chosen"].startswith("GOOD-RESPONSE") for r in out)
    for r in out:
        ann = r["meta"]["curation"]["annotation"]
        assert ann["agrees"] == (r["meta"]["id"] % 2 == 0) and ann["flipped"] == (r["meta"]["id"] % 2 == 1)
        assert ann["llm_prefers"] == "chosen" and r["strength"] == 2.0
        assert r["meta"]["attributes"]["objectivity"] == "objective"
    assert rep["label_agreement"] == {"annotated": 16, "agrees_with_input": 8, "rate": 0.5}
    # nothing dropped silently: every removed pair is in unannotated.jsonl with its reason
    failed = rows(tmp_path / "out" / "unannotated.jsonl")
    assert sorted(r["meta"]["id"] for r in failed + out) == list(range(24))
    assert {r["meta"]["curation"]["annotation_failed"] for r in failed} == set(rep["removed"])
    assert not journal_path(tmp_path / "out").exists(), "the journal goes once the output is published"


def test_a_dead_server_aborts_and_keeps_the_journal_then_the_rerun_resumes(tmp_path):
    src = write_pairs(tmp_path / "pairs.jsonl", 12)
    dead = fake_llm(lambda i: ["503"] if i >= 6 else ["ok"])
    with running(dead) as url:
        with pytest.raises(AnnotateAborted, match="rerun the same command"):
            annotate_pairs(src, tmp_path / "out", endpoint=f"{url}/v1", model="fake", concurrency=1, max_retries=0,
                           max_consecutive_failures=3, **FAST)
    assert not (tmp_path / "out").exists() and journal_path(tmp_path / "out").exists()
    healthy = fake_llm()
    with running(healthy) as url:
        rep = annotate_pairs(src, tmp_path / "out", endpoint=f"{url}/v1", model="fake", concurrency=2, **FAST).to_dict()
    assert rep["requests"]["from_journal"] == 6 and sum(healthy.state.answered.values()) == 6
    assert rep["n_out"] == 12


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_annotates_every_pair_exactly_once(tmp_path):
    n, concurrency = 120, 4
    src = write_pairs(tmp_path / "pairs.jsonl", n)
    app = fake_llm(latency=0.03)
    out = tmp_path / "out"
    journal = journal_path(out)
    with running(app) as url:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "rmlib", "data", "annotate", str(src), "--out", str(out),
                                 "--endpoint", f"{url}/v1", "--model", "fake", "--concurrency", str(concurrency)],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        while not (journal.exists() and journal.read_bytes().count(b"\n") > 30):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "the annotate run never got going"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert not out.exists(), "a killed run publishes nothing"
        time.sleep(0.5)  # requests the dead client had in flight still finish on the server: count them too
        answered_before = sum(app.state.answered.values())
        journaled = journal.read_bytes().count(b"\n") - 1  # the header line
        assert 30 <= journaled <= answered_before < n
        rep = annotate_pairs(src, out, endpoint=f"{url}/v1", model="fake", concurrency=concurrency, **FAST).to_dict()
    assert rep["requests"]["from_journal"] == journaled
    got = sorted(r["meta"]["id"] for r in rows(out / "data.jsonl"))
    assert got == list(range(n)), "every pair once, none lost, none twice"
    assert rep["n_in"] == rep["n_out"] == n and rep["removed"] == {}
    # the resumed run asked only what the journal lacked; at most the requests in flight at the kill twice
    assert rep["requests"]["answered"] == n - journaled
    asked_twice = sum(v - 1 for v in app.state.answered.values() if v > 1)
    assert asked_twice == answered_before - journaled <= concurrency
    assert len(app.state.answered) == n


def test_both_orders_report_position_agreement_and_drop_inconsistent_pairs(tmp_path):
    src = write_pairs(tmp_path / "pairs.jsonl", 12)
    app = fake_llm(lambda i: ["first"] if i % 3 == 0 else ["ok"])  # a position-biased judge on 4 pairs
    with running(app) as url:
        rep = annotate_pairs(src, tmp_path / "out", endpoint=f"{url}/v1", model="fake", both_orders=True, concurrency=3,
                             **FAST).to_dict()
    assert rep["requests"]["answered"] == 24 and len(app.state.answered) == 24  # each pair in both positions
    assert rep["removed"] == {"orders_disagree": 4}
    assert rep["both_orders"] == {"pairs_with_two_verdicts": 12, "same_verdict": 8, "agreement": round(8 / 12, 6)}
    assert all(r["meta"]["curation"]["annotation"]["positions"] == [1, 2] for r in rows(tmp_path / "out" / "data.jsonl"))


def test_keep_label_writes_judge_verdicts_the_consistency_filter_reads(tmp_path):
    src = write_pairs(tmp_path / "pairs.jsonl", 10)
    with running(fake_llm()) as url:
        rep = annotate_pairs(src, tmp_path / "out", endpoint=f"{url}/v1", model="fake", label="keep", **FAST).to_dict()
    data = rows(tmp_path / "out" / "data.jsonl")
    assert [r["meta"]["id"] for r in data] == list(range(10))  # input order and orientation
    assert [r["chosen"].startswith("GOOD") for r in data] == [i % 2 == 0 for i in range(10)]
    verdicts = read_judge_file(tmp_path / "out" / "judge.jsonl", rep["n_out"])
    assert verdicts.tolist() == [i % 2 == 0 for i in range(10)]


def test_retrieved_by_picks_the_human_labelled_examples_shown_in_the_prompt(tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"EXAMPLE-QUESTION-{j}"}],
                                        "chosen": f"EXAMPLE-GOOD-{j}", "rejected": f"EXAMPLE-BAD-{j}", "strength": None,
                                        "votes": None, "meta": {"attributes": {"task_category": f"cat{j}"}}}) + "\n"
                            for j in range(3)))
    src = write_pairs(tmp_path / "pairs.jsonl", 3)
    lines = [json.loads(x) for x in src.read_text().splitlines()]
    for line, by in zip(lines, ([2, 0], [], [1, 2, 0])):
        line["meta"]["curation"] = {"retrieved_by": by}
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    app = fake_llm()
    with running(app) as url:
        rep = annotate_pairs(src, tmp_path / "out", endpoint=f"{url}/v1", model="fake", examples=gold, prompt_examples=2,
                             wait_for=10, **FAST)
    assert rep.n_out == 3
    p0, p1, p2 = (app.state.prompts[i] for i in range(3))
    assert p0.index("EXAMPLE-QUESTION-2") < p0.index("EXAMPLE-QUESTION-0") < p0.index("pair-0")  # in retrieved_by order
    assert '[Attributes] {"task_category": "cat2"}' in p0
    assert "EXAMPLE" not in p1 and "EXAMPLE-QUESTION-0" not in p2, "at most prompt_examples=2 per pair"
    lines[0]["meta"]["curation"]["retrieved_by"] = [7]
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(DataError, match=r"record 0: field 'meta\.curation\.retrieved_by': indices \[7\]"):
        annotate_pairs(src, tmp_path / "out2", endpoint="http://127.0.0.1:9/v1", model="fake", examples=gold, **FAST)
    with pytest.raises(RuntimeError, match="did not answer within"):
        annotate_pairs(src, tmp_path / "out3", endpoint=f"http://127.0.0.1:{free_port()}/v1", model="fake",
                       wait_for=1, **FAST)


def test_a_journal_from_other_options_is_refused(tmp_path):
    src = write_pairs(tmp_path / "pairs.jsonl", 4)
    jp = journal_path(tmp_path / "out")
    jp.write_text(json.dumps({"journal": "rmlib-annotate", "version": 1, "model": "other"}) + "\n")
    with pytest.raises(ValueError, match="other options.*model"):
        annotate_pairs(src, tmp_path / "out", endpoint=f"http://127.0.0.1:{free_port()}", model="fake", **FAST)


def test_position_coin_is_seeded_and_balanced():
    pos = [chosen_position(i, 0) for i in range(2000)]
    assert pos == [chosen_position(i, 0) for i in range(2000)] and set(pos) == {1, 2}
    assert abs(pos.count(1) / 2000 - 0.5) < 0.05  # 5 sigma is ~0.056
    assert pos != [chosen_position(i, 1) for i in range(2000)]


def test_retry_after_and_url_forms():
    assert retry_after("3") == 3.0 and retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert chat_url("http://gpu-node:8000/v1/") == "http://gpu-node:8000/v1/chat/completions"
    assert chat_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"


# ------------------------------------------------------------------------------------------- templates


def test_justifier_template_is_the_justifier_training_input():
    tpl = load_template("justifier")
    prompt = [{"role": "user", "content": "Sort 3 1 2."}]
    (msg,) = tpl.messages(prompt, "1 2 3", "3 2 1")
    assert msg == {"role": "user", "content": judge_input(prompt, "1 2 3", "3 2 1")}


def test_default_template_renders_candidates_examples_and_literal_braces():
    tpl = load_template()
    prompt = [{"role": "user", "content": "Q {response_b}"}]
    ex = [{"prompt": [{"role": "user", "content": "EXQ"}], "response_a": "EXA", "response_b": "EXB",
           "attributes": {"task_category": "math"}, "preferred": 2}]
    system, user = tpl.messages(prompt, "AAA", "BBB", ex)
    assert system["role"] == "system"
    text = user["content"]
    assert text.index("[Candidate 1]\nAAA") < text.index("[Candidate 2]\nBBB")
    assert "Q {response_b}" in text, "a placeholder inside the data is never replaced"
    assert '"preferred": 1, "strength": 2}' in text  # the template's own JSON braces survive
    assert "EXA" in text and '[Attributes] {"task_category": "math"}' in text and "Candidate 2\n" in text


def test_a_bad_template_names_its_file_and_key(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("user: 'compare {response_a} and {response_b}'\n")
    with pytest.raises(ValueError, match=r"t\.yaml.*'user' lacks.*\{conversation\}"):
        load_template(bad)
    bad.write_text("user: '{conversation} {response_a} {response_b}'\nanswer: xml\n")
    with pytest.raises(ValueError, match=r"t\.yaml: key 'answer'"):
        load_template(bad)
    with pytest.raises(ValueError, match="neither a bundled template"):
        load_template(tmp_path / "missing.yaml")


# ------------------------------------------------------------------------------------------- parsing

FULL = ('{"task_category": "math", "objectivity": "objective", "controversiality": "low", '
        '"desired_attributes": ["correct"], "annotation_guideline": "Right answer wins.", '
        '"preferred": %s, "strength": %s}')
REQUIRED = load_template().required

ANSWERS = [
    # (answer text, finish_reason, expected preferred, strength, failure)
    ("```json\n" + FULL % (1, 2) + "\n```", "stop", 1, 2, None),
    ("Let me think. Candidate 2 is right because 2+2=4.\n\n" + FULL % ('"2"', '"3"') + "\nHope this helps!",
     "stop", 2, 3, None),
    (FULL % ('"Candidate 1"', 1), "stop", 1, 1, None),
    ("The format asks for {\"preferred\": ...}. My answer: " + FULL % ('"Response 2"', 2), "stop", 2, 2, None),
    (FULL % ('"tie"', "null"), "stop", 0, None, None),
    ("Both responses fail.\n```\n" + FULL % (2, 1) + "\n```", "stop", 2, 1, None),
    ('{"task_category": "math", "objectivity": "objective", "preferred": 1, "strength": 2}', "stop", None, None,
     "missing:controversiality"),
    (FULL.replace('"strength": %s', '"note": "x"') % 1, "stop", None, None, "missing:strength"),
    (FULL % (3, 2), "stop", None, None, "bad_value:preferred"),
    (FULL % (1, 5), "stop", None, None, "bad_value:strength"),
    (FULL.replace('"objective"', '"very"') % (1, 2), "stop", None, None, "bad_value:objectivity"),
    ("I'm sorry, but I can't help with comparing these responses.", "stop", None, None, "refusal"),
    ("Candidate 1 is better.", "stop", None, None, "no_json"),
    ('{"task_category": "math", "objectivity": "obj', "length", None, None, "truncated"),
    ('{"task_category": "math", preferred: 1}', "stop", None, None, "bad_json"),
    ("", "stop", None, None, "empty"),
    (None, "stop", None, None, "empty"),
]


@pytest.mark.parametrize("text,finish,preferred,strength,failure", ANSWERS)
def test_parse_realistic_answers(text, finish, preferred, strength, failure):
    ans = parse_answer(text, answer="json", required=REQUIRED, finish_reason=finish)
    assert (ans.preferred, ans.strength, ans.failure) == (preferred, strength, failure), ans.detail
    if failure is None and preferred:
        assert ans.attributes["task_category"] == "math" and ans.attributes["desired_attributes"] == ["correct"]


@pytest.mark.parametrize("text,preferred,failure", [
    ("Response 1 is wrong about the date. @Response 2 is better than @Response 1.", 2, None),
    ("@Response 1", 1, None),
    ("@Response 1 and @Response 2 are equally better.", 0, None),
    ("lorem ipsum tokens tokens", None, "no_verdict"),
])
def test_parse_justifier_answers(text, preferred, failure):
    ans = parse_answer(text, answer="justifier")
    assert (ans.preferred, ans.failure) == (preferred, failure)


# ------------------------------------------------------------------------------------------- rmlib serve


@pytest.mark.slow
def test_end_to_end_against_rmlib_serve_of_a_tiny_causal_lm(tmp_path, tiny_llama):
    """`rmlib serve` of a random two-layer causal LM (with a chat template) in its own process: its answers are
    garbage, so the test checks the plumbing and the accounting, not the labels."""
    import httpx

    from rmlib.testing import build_tiny_causal_lm

    lm = build_tiny_causal_lm(tmp_path / "lm", tiny_llama)
    src = write_pairs(tmp_path / "pairs.jsonl", 6)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "rmlib", "serve", str(lm), "--port", str(port), "--device", "cpu",
                               "--served-model-name", "tiny", "--max-length", "1024"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "rmlib serve did not start"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        short = tmp_path / "short.yaml"  # a user's own template, short enough for the tiny model's 1,024 tokens
        short.write_text("name: short\nuser: |\n  {conversation}\n  1: {response_a}\n  2: {response_b}\n"
                         "  JSON with task_category, objectivity, controversiality, desired_attributes,\n"
                         "  annotation_guideline, preferred (1 or 2), strength (1-3):\n")
        runs = {}
        for template in (str(short), "justifier", "skywork_attributes"):
            runs[template] = annotate_pairs(
                src, tmp_path / Path(template).stem, endpoint=f"{url}/v1", model="tiny", template=template,
                both_orders=True, max_tokens=12, concurrency=4, **FAST).to_dict()
        # one request by hand, as the annotator sent it: the same greedy answer is what the output shows
        tpl = load_template(short)
        first = rows(src)[0]
        direct = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
            "model": "tiny", "messages": tpl.messages(first["prompt"], first["chosen"], first["rejected"]),
            "temperature": 0, "max_tokens": 12})
        assert direct.status_code == 200, direct.text
    finally:
        server.terminate()
        server.wait(30)
    for template in (str(short), "justifier"):
        rep, name = runs[template], Path(template).stem
        req = rep["requests"]
        assert req["answered"] == 12 and req["failed"] == {} and req["attempts"] == 12, (template, req)
        assert rep["n_in"] == 6 == rep["n_out"] + sum(rep["removed"].values()), template
        assert all(r.startswith("answer:") or r in ("tie", "orders_disagree") for r in rep["removed"]), rep["removed"]
        kept = rows(tmp_path / name / "data.jsonl")
        failed = rows(tmp_path / name / "unannotated.jsonl")
        assert sorted(r["meta"]["id"] for r in kept + failed) == list(range(6))
    # the default prompt does not fit the tiny model's context: the server's 400 is not retried, and counted
    long = runs["skywork_attributes"]
    assert long["requests"]["failed"] == {"http_400": 12} and long["requests"]["attempts"] == 12
    assert long["removed"] == {"request:http_400": 6} and long["n_out"] == 0
    assert "context_length_exceeded" in long["examples"]["request:http_400"][0]["answer"]
    answers = {r["meta"]["id"]: r for r in rows(tmp_path / "short" / "unannotated.jsonl")}
    # 12 tokens of a random model never make a 7-field JSON object; pair 0's slot 1 shows its chosen first
    assert 0 in answers
    assert answers[0]["meta"]["curation"]["answer"] == direct.json()["choices"][0]["message"]["content"][:300]
