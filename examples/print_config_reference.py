"""Print the configuration reference (Markdown) from the dataclasses in ``rmlib.config``.

``docs/configuration.md`` pastes this output; regenerate it after changing the config tree:

    python examples/print_config_reference.py > /tmp/reference.md

Keys, types, defaults, meanings and allowed values all come from the dataclass fields' metadata
(``rmlib.config.opt``), where each is written once; ``rmlib.config.reference`` reads them.
"""

from __future__ import annotations

from omegaconf import MISSING

from rmlib.config import Config, reference
from rmlib.losses import list_losses, loss_options


def main() -> None:
    print("| key | type | default | meaning |")
    print("|---|---|---|---|")
    for o in reference(Config):
        default = "required" if o.default == MISSING else "`null`" if o.default is None else f"`{o.default!r}`"
        meaning = o.help or "(undocumented)"
        if o.choices:
            meaning += " One of " + ", ".join(f"`{'null' if c is None else c}`" for c in o.choices) + "."
        row = (o.key, f"`{o.type}`", default, meaning)
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    print()
    print("`loss.options` by loss (keyword arguments of the loss class; `reduction` is set by the trainer):")
    print()
    print("| loss | options (default) |")
    print("|---|---|")
    for name in list_losses():
        opts = {k: v for k, v in loss_options(name).items() if k != "reduction"}
        print(f"| `{name}` | " + ", ".join(f"`{k}` ({v!r})" for k, v in opts.items()) + " |")


if __name__ == "__main__":
    main()
