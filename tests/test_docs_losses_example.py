"""docs/losses.md opens with a python block and the text it prints: run the block, compare the text, so the
page cannot drift from the registry (it once listed 5 of the 10 registered losses)."""

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "losses.md"


def test_the_losses_page_example_prints_what_the_page_says():
    text = DOC.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    expected = re.search(r"```text\n(.*?)```", text, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})
    assert out.getvalue() == expected
