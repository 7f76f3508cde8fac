"""The Arrow feature path: the same tokens as the per-example path, a cache that is never stale,
counted drops, named errors, and a main process that builds while the others only read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from rmlib.data.features import COLUMNS_FILE, SourceSpec, build_features
from rmlib.data.formats import load
from rmlib.data.schema import DataError
from rmlib.data.tokenize import Featurizer
from rmlib.models.reward_model import load_tokenizer
from rmlib.testing import CHAT_TEMPLATE, build_tokenizer
from tests.helpers import write_pairs
from tests.oracle_featurizer import OldFeaturizer

FORMATS = Path(__file__).resolve().parents[1] / "rmlib" / "data" / "samples" / "formats"
SOURCES = sorted(p for p in FORMATS.iterdir() if p.suffix in (".jsonl", ".json", ".csv", ".parquet")
                 and "judge" not in p.name)
TRIM_TEMPLATE = CHAT_TEMPLATE.replace("m['content']", "m['content'] | trim")


def _tokenizers(tmp: Path) -> dict:
    """Every template family the samples use: a chat template, one that transforms content (trim),
    pad == eos, and an encoder without a chat template (MiniLM)."""
    chat = build_tokenizer()
    trim = build_tokenizer()
    trim.chat_template = TRIM_TEMPLATE
    return {"chat": chat, "trim": trim, "pad_eq_eos": build_tokenizer(pad_equals_eos=True),
            "minilm": load_tokenizer("minilm-l6")}


def _old_features(tok, examples, kind: str, max_length: int) -> list:
    old = OldFeaturizer(tok, max_length)
    out = []
    for ex in examples:
        seqs = [old.encode(ex.prompt, r) for r in ((ex.chosen, ex.rejected) if kind == "pairs" else (ex.response,))]
        if any(s is None for s in seqs) or (kind == "pairs" and seqs[0].ids == seqs[1].ids):
            continue
        out.append(seqs)
    return out


def _new_features(tok, source: Path, max_length: int, cache: Path) -> list:
    table = build_features(SourceSpec(str(source)), Featurizer(tok, max_length), cache_dir=cache)
    valid = table.equals("drop", "").nonzero()[0]
    from rmlib.data.features import FeatureSet

    items = FeatureSet(table, valid).take(range(len(valid)))
    return [[f.chosen, f.rejected] if table.kind == "pairs" else [f.seq] for f in items]


@pytest.mark.parametrize("max_length", [48, 512])
def test_arrow_features_equal_the_per_example_path_token_for_token(tmp_path, max_length):
    """Every bundled format × every template family; 48 tokens forces prompt truncation and drops."""
    for name, tok in _tokenizers(tmp_path).items():
        for source in SOURCES:
            loaded = load(source)
            old = _old_features(tok, loaded.examples, loaded.kind, max_length)
            new = _new_features(tok, source, max_length, tmp_path / "cache")
            assert len(new) == len(old), (name, source.name)
            for a, b in zip(old, new):
                for x, y in zip(a, b):
                    assert (x.ids, x.prompt_len, x.type_ids) == (y.ids, y.prompt_len, y.type_ids), (name, source.name)


def test_the_prompt_is_rendered_once_per_pair(tmp_path, monkeypatch):
    tok = build_tokenizer()
    calls = {"n": 0}
    original = type(tok).apply_chat_template

    def counting(self, *a, **kw):
        calls["n"] += 1
        return original(self, *a, **kw)

    monkeypatch.setattr(type(tok), "apply_chat_template", counting)
    data = write_pairs(tmp_path / "pairs.jsonl", 40)
    build_features(SourceSpec(str(data)), Featurizer(tok, 64), cache_dir=tmp_path / "c")
    # the prompt once, the template with a placeholder response once, and (for the first pairs of a
    # batch) a full render that checks the placeholder: far from 4 renders per pair
    assert calls["n"] <= 2 * 40 + 8


def test_cache_hits_and_every_key_component_invalidates(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", 30)
    cache = tmp_path / "cache"
    tok = build_tokenizer()

    def build(spec=None, t=tok, max_length=64, keep_system=True, labels=()):
        return build_features(spec or SourceSpec(str(data)), Featurizer(t, max_length, keep_system), labels=labels,
                              cache_dir=cache)

    first = build()
    assert first.built and first.tokenize_seconds > 0
    hit = build()
    assert not hit.built and hit.tokenize_seconds == 0 and hit.directory == first.directory
    assert len(hit.ds) == len(first.ds) and hit.report.to_dict() == first.report.to_dict()
    other_template = build_tokenizer()
    other_template.chat_template = TRIM_TEMPLATE
    changed = {
        "tokenizer vocabulary": lambda: build(t=build_tokenizer(vocab_size=900)),
        "chat template": lambda: build(t=other_template),
        "max_length": lambda: build(max_length=48),
        "keep_system": lambda: build(keep_system=False),
        "labels": lambda: build(labels=("margin",)),
        "format": lambda: build(spec=SourceSpec(str(data), format="rmlib_pairs")),
        "on_invalid": lambda: build(spec=SourceSpec(str(data), on_invalid="skip")),
    }
    seen = {first.directory}
    for what, fn in changed.items():
        t = fn()
        assert t.built and t.directory not in seen, what
        seen.add(t.directory)
    # the file itself: new contents under the same name is a new key, never a stale hit
    data.write_text(data.read_text().replace('"yes ', '"YES '))
    t = build()
    assert t.built and t.directory not in seen
    assert not list(cache.glob("*.tmp"))  # every build was published whole


def test_scalar_columns_live_contiguous_in_a_side_file(tmp_path, monkeypatch):
    """The epoch plan's lengths, the hold-out's hashes and the drop/split masks are read from
    ``columns.arrow``, where each column is one contiguous buffer, not from the token-id file's
    record batches (where a whole-column read pulls token pages into memory). The token file's
    batches are ``TOKENS_BATCH_ROWS`` rows (shrunk here so 1,300 rows make several)."""
    import pyarrow as pa

    import rmlib.data.features as F

    monkeypatch.setattr(F, "TOKENS_BATCH_ROWS", 500)
    data = write_pairs(tmp_path / "pairs.jsonl", 1300)
    table = build_features(SourceSpec(str(data)), Featurizer(build_tokenizer(), 64), cache_dir=tmp_path / "c")
    with pa.memory_map(str(table.directory / COLUMNS_FILE)) as f:
        side = pa.ipc.open_file(f)
        assert side.num_record_batches == 1
        assert "head" not in side.schema.names and "resp_0" not in side.schema.names  # no token ids
    assert [len(b) for b in table.ds.data.to_batches()] == [512, 512, 276]  # flushed at >= 500 rows
    for name in ("n_tokens", "index", "prompt_hash", "content_hash"):
        assert table.column(name).tolist() == table.ds.data.column(name).to_pylist(), name
    assert table.equals("drop", "").tolist() == [d == "" for d in table.ds.data.column("drop").to_pylist()]
    assert table.equals("split", None).all()


def test_worker_processes_and_the_in_process_map_write_the_same_features(tmp_path):
    """``num_proc=2`` forks map workers, the default tokenizes here: the stored tables are identical."""
    data = write_pairs(tmp_path / "pairs.jsonl", 300)
    tok = build_tokenizer()
    here = build_features(SourceSpec(str(data)), Featurizer(tok, 64), cache_dir=tmp_path / "a")
    forked = build_features(SourceSpec(str(data)), Featurizer(tok, 64), cache_dir=tmp_path / "b", num_proc=2)
    shards = [f for f in (tmp_path / "b").glob("*/*.arrow") if f.name != COLUMNS_FILE]
    assert len(shards) == 2  # one shard per worker
    assert forked.ds.data.to_pydict() == here.ds.data.to_pydict()
    assert forked.side.to_pydict() == here.side.to_pydict()  # the scalar side file, gathered over shards
    assert forked.side.column_names == [c for c in here.ds.column_names if c in forked.side.column_names]
    assert set(forked.side.column_names) >= {"n_tokens", "drop", "index", "prompt_hash", "content_hash", "split"}
    assert (forked.side.column("n_tokens").to_pylist() == forked.ds.data.column("n_tokens").to_pylist())
    assert forked.report.to_dict() == here.report.to_dict()


def test_worker_processes_use_every_core_for_large_sources(monkeypatch):
    """The data layer's one process-count rule, shared by the feature cache and the curation steps."""
    from rmlib.data.workers import PARALLEL_MIN_ROWS, worker_processes

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert worker_processes(PARALLEL_MIN_ROWS, None) == 2
    assert worker_processes(PARALLEL_MIN_ROWS - 1, None) is None  # small: workers cost more than they save
    assert worker_processes(100, 4) == 4 and worker_processes(100, 1) is None and worker_processes(100, 0) is None
    assert worker_processes(1, 4) is None  # one record cannot be split
    assert worker_processes(100, None, min_rows=50) == 2  # the threshold is a parameter (tests force workers)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert worker_processes(10**7, None) == 16


def _pid(job, k):
    return job, k, os.getpid()


def _die_in_worker(job, k):
    import signal

    if k == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does to a worker
    return os.getpid()


def _raise_in_worker(job, k):
    if k >= 1:
        raise DataError("f.jsonl", k * 10, "chosen", "missing", "missing_field")
    return k


def test_the_worker_pool_forks_names_a_killed_worker_and_raises_the_first_error():
    from rmlib.data.workers import WorkerDied, row_ranges, run_in_workers

    assert row_ranges(10, 3) == [(0, 3), (3, 6), (6, 10)] and row_ranges(2, 8) == [(0, 1), (1, 2)]
    assert run_in_workers(_pid, "job", [(0,)], 2) == [("job", 0, os.getpid())]  # one task: this process
    forked = run_in_workers(_pid, {"inherited": True}, [(0,), (1,), (2,)], 2)
    assert [k for _, k, _ in forked] == [0, 1, 2] and all(j == {"inherited": True} for j, _, _ in forked)
    assert os.getpid() not in {pid for _, _, pid in forked}
    with pytest.raises(WorkerDied, match="a tokenize worker died .*set data.num_proc lower"):
        run_in_workers(_die_in_worker, None, [(0,), (1,)], 2, what="tokenize", setting="data.num_proc")
    # a DataError of a worker arrives whole (it does not pickle by itself), the first one in task order
    with pytest.raises(DataError, match=r"^f.jsonl: record 10: field 'chosen': missing$") as err:
        run_in_workers(_raise_in_worker, None, [(0,), (1,), (2,)], 2)
    assert (err.value.index, err.value.reason) == (10, "missing_field")


def _files(directory: Path) -> dict:
    return {f.name: f.read_bytes() for f in sorted(directory.iterdir())}


def _serial_and_parallel(tmp_path: Path, monkeypatch, spec: SourceSpec, *, num_proc: int = 3, **kw):
    """The same build twice with the same tokenize workers: the canonical pass cut into parts on the data
    layer's workers, then in one process. The serial run turns the planner of parts off (it is rmlib's own
    switch between the two code paths, not a stand-in for anything)."""
    import rmlib.data.features as F

    tok = build_tokenizer()
    parallel = build_features(spec, Featurizer(tok, 64), cache_dir=tmp_path / "parallel", num_proc=num_proc, **kw)
    with monkeypatch.context() as m:
        m.setattr(F, "_canonical_parts", lambda *a: None)
        serial = build_features(spec, Featurizer(tok, 64), cache_dir=tmp_path / "serial", num_proc=num_proc, **kw)
    return serial, parallel


def test_the_canonical_pass_in_parts_writes_the_serial_bytes_and_report(tmp_path, monkeypatch):
    """JSONL cut at byte offsets into 3 parts on worker processes: every record index and line number in
    the report is the file's own (bad lines and a blank line in every part), the skip counts and examples
    are the serial pass's, the cache key is the same and every file of the cache is byte for byte the same."""
    import rmlib.data.features as F
    from rmlib.data import formats

    data = write_pairs(tmp_path / "pairs.jsonl", 600)
    lines = data.read_text().splitlines()
    for i in (15, 250, 421, 590):  # in every part: missing fields (odd), a wrong type (even), bad JSON
        r = json.loads(lines[i])
        r.pop("chosen") if i % 2 else r.update(rejected=17)
        lines[i] = json.dumps(r)
    lines[300] = '{"prompt": [broken json'
    for i in (100, 350, 501):
        lines.insert(i, "   ")
    data.write_text("\n".join(lines) + "\n")
    spec = SourceSpec(str(data), on_invalid="skip")

    st = formats.stream(str(data), on_invalid="skip")
    file, processes, parts = F._canonical_parts(spec, st, True, 3)
    st.examples.close()
    assert processes == 3 and len(parts) == 3 and parts[0].start == 0 and parts[-1].stop == data.stat().st_size
    raw = data.read_bytes()
    for part in parts[1:]:  # each part begins at the first line that starts in its byte range
        begin = raw.index(b"\n", part.start - 1) + 1
        before = raw[:begin].split(b"\n")[:-1]
        assert part.lineno == len(before) + 1 and part.index == sum(bool(b.strip()) for b in before)

    serial, parallel = _serial_and_parallel(tmp_path, monkeypatch, spec)
    assert parallel.directory.name == serial.directory.name  # the same cache key
    assert _files(parallel.directory) == _files(serial.directory)
    report = parallel.report.to_dict()
    assert json.dumps(report) == json.dumps(serial.report.to_dict())
    assert report["skipped"] == {"wrong_type": 2, "missing_field": 2, "undecodable_line": 1} and report["kept"] == 595
    text = parallel.report.format()
    for needle in ("record 15: field 'chosen'", "record 250: field 'rejected'", "record 421: field 'chosen'",
                   "record 300: line 302 is not valid UTF-8 JSON"):  # a blank line before it takes no index
        assert needle in text, needle
    # under on_invalid=error both raise the first bad record, which is in the first part
    with pytest.raises(DataError) as par:
        build_features(SourceSpec(str(data)), Featurizer(build_tokenizer(), 64), cache_dir=tmp_path / "e1",
                       num_proc=3)
    assert str(par.value).startswith(f"{data}: record 15: field 'chosen'")


def test_the_first_error_of_a_later_part_is_the_serial_error(tmp_path, monkeypatch):
    data = write_pairs(tmp_path / "pairs.jsonl", 300)
    lines = data.read_text().splitlines()
    lines[280], lines[290] = '{"prompt": [broken json', "[]"
    data.write_text("\n".join(lines) + "\n")
    errors = []
    for _ in range(2):
        with pytest.raises(DataError) as err:
            _serial_and_parallel(tmp_path / str(len(errors)), monkeypatch, SourceSpec(str(data)))
        errors.append(str(err.value))
    assert errors[0].startswith(f"{data}: record 280: line 281 is not valid UTF-8 JSON")  # the parallel build
    assert not list((tmp_path / "0" / "parallel").glob("*/manifest.json"))  # nothing published


def test_the_canonical_pass_in_parquet_row_groups_and_ratings_attributes(tmp_path, monkeypatch):
    """Parquet in runs of row groups (the file's own row numbers in errors), and ratings whose attributes
    are named in order of first appearance across parts: the serial files and report, byte for byte."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in write_pairs(tmp_path / "p.jsonl", 400).read_text().splitlines()]
    for i, r in enumerate(rows):
        r["meta"] = {"id": i}  # (Parquet cannot store an empty struct)
    for i in (30, 333):
        rows[i]["chosen"] = ""  # an empty response: skipped and named
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet", row_group_size=50)
    import rmlib.data.features as F
    from rmlib.data import formats

    spec = SourceSpec(str(tmp_path / "pairs.parquet"), on_invalid="skip")
    st = formats.stream(spec.path, on_invalid="skip")
    _, _, parts = F._canonical_parts(spec, st, True, 3)
    st.examples.close()
    assert [(p.start, p.stop, p.index) for p in parts] == [(0, 3, 0), (3, 6, 150), (6, 8, 300)]  # 8 groups of 50
    serial, parallel = _serial_and_parallel(tmp_path / "pq", monkeypatch, spec)
    assert _files(parallel.directory) == _files(serial.directory)
    assert parallel.report.to_dict() == serial.report.to_dict() and parallel.report.n_skipped == 2
    assert "record 333: field 'chosen'" in parallel.report.format()

    ratings = tmp_path / "ratings.jsonl"
    with open(ratings, "w") as f:
        for i in range(300):  # "verbosity" first appears in the last part, "coherence" in the second
            attrs = {"helpfulness": i % 5, **({"coherence": 1} if i >= 150 else {}), **({"verbosity": 2} if i >= 280 else {})}
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"q {i}"}], "response": f"a {i}",
                                "attributes": attrs, "meta": {}}) + "\n")
    serial, parallel = _serial_and_parallel(tmp_path / "r", monkeypatch, SourceSpec(str(ratings)),
                                            labels=("targets",))
    assert parallel.attributes == serial.attributes == ["helpfulness", "coherence", "verbosity"]
    assert _files(parallel.directory) == _files(serial.directory)


def test_encode_examples_is_the_feature_cache_path_for_examples_in_memory(tmp_path):
    """Features of in-memory examples (what tests and benchmarks use) are those a training run reads
    from the cache of the same data: same ids, prompt lengths, labels and positions; same drops."""
    from rmlib.data.features import FeatureSet, encode_examples
    from rmlib.data.schema import ValidationReport

    data = write_pairs(tmp_path / "pairs.jsonl", 40)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[7]["chosen"] = "yes " + "word " * 200  # cannot fit in 64 tokens
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    feat = Featurizer(build_tokenizer(), 64)
    table = build_features(SourceSpec(str(data)), feat, labels=("margin",), cache_dir=tmp_path / "c")
    valid = table.equals("drop", "").nonzero()[0]
    cached = FeatureSet(table, valid).take(range(len(valid)))
    report = ValidationReport("memory")
    mine = encode_examples(feat, load(data).examples, report, labels=("margin",))
    assert [(f.index, f.chosen.ids, f.rejected.ids, f.chosen.prompt_len, f.labels) for f in mine] == \
        [(f.index, f.chosen.ids, f.rejected.ids, f.chosen.prompt_len, f.labels) for f in cached]
    assert 7 not in [f.index for f in mine] and len(mine) == 39
    assert report.filtered == {"too_long": 1} and report.examples["too_long"][0].startswith("memory: example 7 ")
    assert encode_examples(feat, [], report) == []
    with pytest.raises(TypeError, match="one kind at a time"):
        encode_examples(feat, [load(data).examples[0], "not an example"], report)


def test_drops_are_counted_with_file_and_record(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", 30)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[7]["chosen"] = "yes " + "word " * 200  # cannot fit in 64 tokens
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = build_features(SourceSpec(str(data)), Featurizer(build_tokenizer(), 64), cache_dir=tmp_path / "c")
    r = t.report
    assert r.filtered["too_long"] == 1 and r.kept == 29 and r.seen == r.kept + r.n_skipped + r.n_filtered
    assert f"{data}: example 7 (0-based" in r.examples["too_long"][0]


def test_malformed_records_in_a_large_file_are_named_or_counted(tmp_path):
    data = write_pairs(tmp_path / "big.jsonl", 5000)
    lines = data.read_text().splitlines()
    bad = {1234: lambda r: r.pop("chosen"), 3001: lambda r: r.update(rejected=17), 4999: lambda r: r.update(prompt=[])}
    for i, mutate in bad.items():
        r = json.loads(lines[i])
        mutate(r)
        lines[i] = json.dumps(r)
    lines[2500] = '{"prompt": [broken json'
    data.write_text("\n".join(lines) + "\n")
    tok = build_tokenizer()
    with pytest.raises(DataError, match=r"big.jsonl: record 1234: field 'chosen'"):
        build_features(SourceSpec(str(data)), Featurizer(tok, 64), cache_dir=tmp_path / "c")
    assert not [p for p in (tmp_path / "c").iterdir() if not p.name.endswith(".tmp")]  # nothing published
    t = build_features(SourceSpec(str(data), on_invalid="skip"), Featurizer(tok, 64), cache_dir=tmp_path / "c")
    r = t.report
    assert r.n_skipped == 4 and r.kept == 4996 and r.seen == 5000 and len(t.ds) == 4996
    text = r.format()
    for needle in ("record 1234: field 'chosen'", "record 3001: field 'rejected'", "record 4999: field 'prompt'",
                   "line 2501 is not valid UTF-8 JSON"):
        assert needle in text, needle


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_share_one_build(tiny_llama, tmp_path):
    """The main process builds the features; rank 1 memory-maps the finished cache and tokenizes nothing."""
    import subprocess
    import sys

    from tests.helpers import write_config

    data = write_pairs(tmp_path / "pairs.jsonl", 64)
    cfg = write_config(tmp_path / "c.yaml", model={"name_or_path": str(tiny_llama)},
                       data={"train": str(data), "max_length": 64, "cache_dir": str(tmp_path / "cache")},
                       loss={"name": "bt"}, train={"output_dir": str(tmp_path / "run"), "per_device_batch_size": 4,
                                                   "max_steps": 2, "progress": False})
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "--main_process_port", "0", "-m", "rmlib", "train", str(cfg)],
                   env=env, check=True, capture_output=True, timeout=600)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["num_processes"] == 2
    assert summary["features"]["built_by_rank"] == [True, False]
    assert summary["features"]["tokenize_seconds_by_rank"][1] == 0
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_prepare_builds_the_cache_a_training_run_then_hits(tiny_llama, tmp_path):
    from rmlib.cli import main
    from rmlib.training import train
    from tests.helpers import write_config

    data = write_pairs(tmp_path / "pairs.jsonl", 48)
    cache = tmp_path / "cache"
    cfg = write_config(tmp_path / "c.yaml", model={"name_or_path": str(tiny_llama)},
                       data={"train": str(data), "max_length": 64, "cache_dir": str(cache)},
                       loss={"name": "bt"}, train={"output_dir": str(tmp_path / "run"), "per_device_batch_size": 8,
                                                   "max_steps": 2, "progress": False})
    assert main(["data", "prepare", "--config", str(cfg)]) == 0
    built = list(cache.iterdir())
    assert len(built) == 1
    s = train(str(cfg))
    assert s["features"]["built_by_rank"] == [False]  # the run only read what prepare built
    assert list(cache.iterdir()) == built
    shutil.rmtree(cache)


def _peak_rss_of(cmd: list[str], env: dict) -> tuple[float, str]:
    """Run ``cmd`` and sample its private resident memory (``RssAnon``) every 20 ms (an RSS
    watchdog); peak in MB.

    Why private memory: ``VmRSS`` also counts mapped file pages (libtorch, the feature files),
    whose number follows the page cache's state at that moment, not the program. On ``VmRSS``
    this test failed twice in eleven runs of the data test files beside other tests (never when
    run alone: 579 vs 588-593 MB over five runs). Private memory is what records held in Python
    or Arrow buffers would grow (409-410 vs 416-419 MB over the same five runs)."""
    import subprocess
    import time

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0.0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("RssAnon"))
            peak = max(peak, rss / 1024)
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            pass
        time.sleep(0.02)
    out = proc.stdout.read()
    assert proc.returncode == 0, out[-3000:]
    return peak, out


@pytest.mark.slow
def test_a_source_larger_than_the_memory_budget_streams_and_trains(tiny_llama, tmp_path):
    """Peak RSS does not grow with the number of records: a file 20× larger than another (and more
    than 5× the memory it adds) is read, tokenized and trained on within the same memory."""
    import sys

    from tests.helpers import write_config

    def run(n: int) -> tuple[float, float]:
        data = tmp_path / f"pairs_{n}.jsonl"
        write_pairs(data, n)
        rows = data.read_text().splitlines()
        notes = " filler" * 400  # ~3 KB of metadata per pair: 20k pairs make a file of more than 50 MB
        data.write_text("".join(json.dumps({**json.loads(line), "meta": {"notes": notes}}) + "\n" for line in rows))
        cfg = write_config(tmp_path / f"c_{n}.yaml", model={"name_or_path": str(tiny_llama)},
                           data={"train": str(data), "max_length": 64, "cache_dir": str(tmp_path / f"cache_{n}"),
                                 "num_proc": 1},
                           loss={"name": "bt"}, train={"output_dir": str(tmp_path / f"run_{n}"),
                                                       "per_device_batch_size": 8, "max_steps": 2, "progress": False})
        peak, out = _peak_rss_of([sys.executable, "-m", "rmlib", "train", str(cfg)], {**os.environ, "OMP_NUM_THREADS": "1"})
        assert f"{n} records read, {n} kept" in out and "done: 2 steps" in out
        return peak, data.stat().st_size / 2**20

    small, _ = run(1_000)
    large, file_mb = run(20_000)
    assert file_mb > 50 and file_mb > (large - small) * 5
    assert large <= small + 100, (small, large)  # flat in N: the 20x larger file costs < 100 MB more


def test_mixed_sources_with_weights_and_named_eval_sets(tiny_llama, tmp_path):
    """Two extra sources drawn with weights 0.5 and 2, each reported; two named eval sets, each logged."""
    from rmlib.training import train

    main_src = write_pairs(tmp_path / "main.jsonl", 40)
    half = write_pairs(tmp_path / "half.jsonl", 20, seed=1)
    double = write_pairs(tmp_path / "double.jsonl", 10, seed=2)
    ev_a = write_pairs(tmp_path / "ev_a.jsonl", 6, seed=3)
    ev_b = write_pairs(tmp_path / "ev_b.jsonl", 4, seed=4)
    cfg = {"model": {"name_or_path": str(tiny_llama)},
           "data": {"train": str(main_src), "max_length": 64, "eval": str(ev_a),
                    "mix": [{"path": str(half), "weight": 0.5, "name": "half"},
                            {"path": str(double), "weight": 2.0, "name": "double"}],
                    "eval_sets": {"b": str(ev_b)}},
           "loss": {"name": "bt"}, "train": {"output_dir": str(tmp_path / "run"), "per_device_batch_size": 10,
                                             "epochs": 1, "progress": False, "lr": 3e-3}}
    s = train(cfg)
    # 40 + round(0.5 × 20) + 2 × 10 = 70 items per epoch, in global batches of 10
    assert s["steps"] == 7
    mixture = "\n".join(s["data_report"]["examples"]["mixture"])
    assert "half: 20 examples, weight 0.5 → 10 per epoch" in mixture
    assert "double: 10 examples, weight 2 → 20 per epoch" in mixture
    assert set(s["eval_sets"]) == {"b"} and 0 <= s["eval_sets"]["b"]["accuracy"] <= 1
    assert s["eval"]["loss"] != s["eval_sets"]["b"]["loss"]  # two different sets, each its own metrics


def test_mixed_set_draw_is_seeded_and_complete(tmp_path):
    from rmlib.data.features import FeatureSet, MixedSet

    tok = build_tokenizer()
    a = build_features(SourceSpec(str(write_pairs(tmp_path / "a.jsonl", 12))), Featurizer(tok, 64),
                       cache_dir=tmp_path / "c")
    b = build_features(SourceSpec(str(write_pairs(tmp_path / "b.jsonl", 8, seed=1))), Featurizer(tok, 64),
                       cache_dir=tmp_path / "c")
    sa, sb = FeatureSet(a, range(12)), FeatureSet(b, range(8))
    m1 = MixedSet([sa, sb], [1.0, 1.5], ["a", "b"], seed=0)
    m2 = MixedSet([sa, sb], [1.0, 1.5], ["a", "b"], seed=0)
    assert len(m1) == 12 + 12 and (m1.pos == m2.pos).all()
    assert sorted(m1.pos[m1.src == 1].tolist()).count(3) in (1, 2)  # every b item once, 4 of them twice
    assert sorted(set(m1.pos[m1.src == 1].tolist())) == list(range(8))
    items = m1.take([0, 12, 23])
    assert items[0].chosen.ids == sa.take([0])[0].chosen.ids
    assert len(m1.labels([0, 12, 23])) == 0  # bt consumes no label


def test_all_annotations_option_trains_on_every_annotators_label(tiny_llama, tmp_path):
    """data.annotations=all: one pair per non-tie vote, oriented by it; the evaluation file stays aggregated."""
    from rmlib.config import load_config
    from rmlib.training.data import featurizer_for, load_examples

    data = write_pairs(tmp_path / "votes.jsonl", 40, votes=True)  # three non-tie votes per pair
    ev = write_pairs(tmp_path / "eval.jsonl", 6, seed=9, votes=True)
    base = {"model": {"name_or_path": str(tiny_llama)},
            "data": {"train": str(data), "eval": str(ev), "max_length": 64, "cache_dir": str(tmp_path / "c")},
            "loss": {"name": "bt"}, "train": {"output_dir": str(tmp_path / "run")}}
    agg = load_examples(cfg := load_config(None, base=base), featurizer_for(cfg))
    cfg = load_config(None, ["data.annotations=all"], base=base)
    every = load_examples(cfg, featurizer_for(cfg))
    assert len(agg.train) == 40 and len(every.train) == 120
    assert len(every.eval) == len(agg.eval) == 6
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    against = sum(v < 0 for r in rows for v in r["votes"])  # votes for the file's rejected response
    tok = featurizer_for(cfg).tok
    flipped = sum(tok.decode(f.chosen.ids[f.chosen.prompt_len:]).startswith("no")
                  for f in every.train)
    assert flipped == against > 0  # each vote against the aggregate is a pair with the sides swapped


def test_holdout_keeps_the_shuffled_prompt_split_in_numpy():
    """The hold-out runs ``random.Random(seed).shuffle``'s draws over a numpy array (a Python list
    of keys cost ~40 bytes a prompt): same prompts held out as the list version, no prompt on both
    sides, and the fraction is of prompts, not rows."""
    import random

    import numpy as np

    from rmlib.training.data import holdout, member

    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 1000):
        h = rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64)
        h = np.concatenate([h, h[: n // 3]])  # some prompts twice
        for seed in (0, 3):
            keys = np.unique(h).tolist()
            random.Random(seed).shuffle(keys)
            n_eval = max(1, round(len(keys) * 0.1))
            expected = np.isin(h, np.asarray(keys[:n_eval], dtype=h.dtype))
            got = holdout(h, 0.1, seed)
            assert (got == expected).all(), (n, seed)
            assert not set(h[got]) & set(h[~got])  # a prompt is on one side only
            assert len(set(h[got])) == n_eval
    values, wanted = rng.integers(0, 100, 5000), np.unique(rng.integers(0, 100, 30))
    assert (member(values, wanted, chunk=7) == np.isin(values, wanted)).all()
    assert not member(values, np.zeros(0, dtype=values.dtype)).any()


_FORK_AFTER_PARALLEL = r"""
import os, sys
os.environ["TOKENIZERS_PARALLELISM"] = "true"
from rmlib.data.features import SourceSpec, build_features
from rmlib.data.tokenize import Featurizer
from rmlib.models.reward_model import load_tokenizer
from rmlib.io import resolve_model
tok = load_tokenizer(resolve_model("minilm-l6"))
tok.backend_tokenizer.encode_batch(["warm the thread pool " * 50] * 2000)  # the parent uses Rust threads
t = build_features(SourceSpec(sys.argv[1]), Featurizer(tok, 256), cache_dir=sys.argv[2], num_proc=2)
print("rows", len(t.ds))
"""


def test_tokenize_workers_do_not_hang_after_the_parent_used_tokenizer_threads(tmp_path):
    """A forked worker that enters the Rust tokenizer's thread pool after the parent used it waits
    forever (the pool's threads are not copied by fork). Run in a subprocess with a timeout, so a
    regression fails here instead of hanging the suite."""
    import subprocess
    import sys

    data = write_pairs(tmp_path / "pairs.jsonl", 600)
    out = subprocess.run([sys.executable, "-c", _FORK_AFTER_PARALLEL, str(data), str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=240,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "rows 600" in out.stdout
