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


def test_the_import_contracts_hold_and_the_cycle_contract_catches_a_function_level_cycle(tmp_path):
    """`lint-imports` keeps every contract of pyproject.toml, and the cycle contract is not vacuous: the same
    contract over a package whose two modules import each other (one of them inside a function, like the
    export <-> lora cycle it replaced) is broken."""
    import subprocess
    import sys
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (CI runs 3.11)

    root = Path(__file__).resolve().parents[1]
    contracts = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    cycle = next(c for c in contracts if c["type"] == "acyclic_siblings")
    assert cycle["ancestors"] == ["rmlib"]
    lint = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"]
    ok = subprocess.run(lint, cwd=root, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "0 broken" in ok.stdout, ok.stdout[-2000:]

    pkg = tmp_path / "cyc" / "inner"
    pkg.mkdir(parents=True)
    (tmp_path / "cyc" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "export.py").write_text("def merge():\n    from cyc.inner.lora import run\n    return run\n")
    (pkg / "lora.py").write_text("from cyc.inner.export import merge\n\ndef run():\n    return merge\n")
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\nroot_package = cyc\n\n[importlinter:contract:cycle]\n"
        f"name = {cycle['name']}\ntype = acyclic_siblings\nancestors = cyc\n")
    broken = subprocess.run(lint, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert broken.returncode != 0 and "1 broken" in broken.stdout, broken.stdout[-2000:]
