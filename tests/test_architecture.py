"""docs/architecture.md is executed: every Python block in it runs here, and its examples work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def isolated_registries(monkeypatch):
    from rmlib.data import formats
    from rmlib.losses import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(formats, "FORMATS", dict(formats.FORMATS))


def test_the_architecture_doc_has_runnable_examples(isolated_registries, tmp_path):
    blocks = _blocks()
    assert len(blocks) >= 2
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), namespace)
    # the format example really reads a file through the one loader, with detection
    from rmlib.data.formats import load

    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "2+2?", "good": "4", "bad": "5"}) + "\n")
    loaded = load(path)
    assert loaded.format == "qa_pairs_example" and loaded.examples[0].chosen == "4"
    from rmlib.data.formats import FORMATS, FormatSpec, register_format

    with pytest.raises(ValueError, match="already registered"):
        register_format("trl", FormatSpec("pairs", lambda r: False, lambda r, i, c: None))
    assert "qa_pairs_example" in FORMATS
