"""README's quickstart commands are the ones CI and users actually run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_quickstart_has_exactly_two_commands():
    cmds = _quickstart_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    assert "rmlib train" in cmds[0] and "pytest" in cmds[1]


def test_readme_test_command_lints_before_testing():
    cmd = _quickstart_commands()[1]
    assert "ruff check ." in cmd and "lint-imports" in cmd
    assert cmd.index("ruff check .") < cmd.index("pytest") and cmd.index("lint-imports") < cmd.index("pytest")


def test_ci_runs_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _quickstart_commands()[1] in ci.splitlines()


def test_quickstart_config_and_data_exist():
    cmd = _quickstart_commands()[0]
    for path in re.findall(r"(configs/\S+\.yaml|rmlib/data/samples/\S+\.jsonl)", cmd):
        assert (ROOT / path).is_file(), path
    assert "torch==2.13.0" in cmd.split("pip install -e")[0]  # torch first, so no CUDA build is pulled
