"""Every file, module and attribute name the docs give exists in the tree, so the docs cannot drift.

The pages are README.md, docs/ and each recipe's README. Checked: paths under the repository's own
folders (``rmlib/...``, ``tests/...``, ``configs/...``), bare ``name.py`` file names (a file of that name must
exist somewhere in the repository), and dotted ``rmlib.x.y`` names (imported, then looked up
attribute by attribute). Files of *other* projects that the docs cite as sources are listed in
:data:`UPSTREAM` with their repository, and outputs that commands create in :data:`CREATED`.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *ROOT.glob("recipes/*/README.md")])
OWN = ("rmlib", "tests", "bench", "configs", "recipes", "examples", "tools", "docs")

UPSTREAM = {  # cited sources, not our files
    "docs/source/dataset_formats.md",  # huggingface/trl
    "examples/datasets/hh-rlhf-helpful-base.py",  # huggingface/trl
    "docs/user-guide/rlhf.rst", "docs/user-guide/steerlm.rst",  # NVIDIA/NeMo-Aligner
    "examples/nlp/data/steerlm/process_to_regression_format.py", "nemo_aligner/data/nlp/datasets.py",  # NeMo-Aligner
    "rewardbench/constants.py", "scripts/run_rm.py", "scripts/utils.py", "scripts/run_generative.py",  # reward-bench
    "utils/metrics.py", "utils/judges.py",  # ScalerLab/JudgeBench
    "eval/scripts/my_run_rm.py",  # Haochen-Wang/RMB
    "run_rm.py", "constants.py", "utils.py", "metrics.py", "judges.py", "my_run_rm.py", "datasets.py",
    "run_generative.py", "process_to_regression_format.py", "hh-rlhf-helpful-base.py",
    "reward_trainer.py", "data_utils.py", "serve_rm.py", "agent.py", "run.py",
    "docs/source/grpo_trainer.md",  # huggingface/trl
    "docs/advance/reward_loop.rst",  # volcengine/verl
}
CREATED = {"bench/results/gpu/"}  # written by bench/gpu_check.py on a GPU machine

# lower-case path characters (and {a,b} alternatives, skipped): "rmlib/TRL" in prose is no path
_OWN_PATH = re.compile(r"(?<![\w/.-])((?:" + "|".join(OWN) + r")/[a-z0-9_./{},-]*[a-z0-9_/}])")
_BARE_PY = re.compile(r"(?<![\w/.-])([\w-]+\.py)\b")
_DOTTED = re.compile(r"(?<![\w/.-])(rmlib(?:\.[A-Za-z_]\w*)+)")
_FILE_SUFFIXES = (".json", ".yaml", ".yml", ".md", ".py", ".jsonl", ".txt", ".csv", ".png", ".arrow", ".sh")
_REPO_FILES = {p.name for p in ROOT.rglob("*") if ".git" not in p.parts and ".venv" not in p.parts}


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def _missing(text: str) -> list[str]:
    out = []
    for path in (p.rstrip(",") for p in _OWN_PATH.findall(text)):
        if path in UPSTREAM or path in CREATED or any(c in path for c in "*<{"):
            continue
        if not (ROOT / path).exists():
            out.append(path)
    for name in _BARE_PY.findall(text):
        if name not in _REPO_FILES and name not in UPSTREAM:
            out.append(name)
    for dotted in _DOTTED.findall(text):
        if not dotted.endswith(_FILE_SUFFIXES) and not _resolves(dotted):
            out.append(dotted)
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_name_a_page_gives_exists(page):
    missing = sorted(set(_missing(page.read_text())))
    assert not missing, f"{page.relative_to(ROOT)} names what the tree does not have: {missing}"


def test_the_check_catches_names_that_are_gone():
    found = set(_missing("see rmlib/expo.py and `launch.py`; call rmlib.training.nothing_here()"))
    assert found == {"rmlib/expo.py", "launch.py", "rmlib.training.nothing_here"}
    assert not _missing("rmlib/training/trainer.py, `trainer.py`, rmlib.training.Trainer, rmlib.json")
