"""ExPO model extrapolation for reward models: ``θ = θ_strong + α·(θ_strong − θ_weak)``.

ExPO ("Model Extrapolation Expedites Alignment", arXiv 2404.16792) moves further along the
direction training took, from a *weak* checkpoint (e.g. a helpfulness-only regression RM) to a
*strong* one (e.g. the Scaled-BT RM initialised from it). ``α = 0`` returns strong, ``α = −1``
returns weak; the HelpSteer2-Preference paper's (arXiv 2410.01257) "extrapolation factor" ``F`` is
``1 + α``. User guide: ``docs/expo.md``.

Modules:

* :mod:`rmlib.expo.matching`: opening the checkpoints (plain, hub, or LoRA adapters merged on
  the fly by :mod:`rmlib.models.merge`), the architecture check, pairing tensors weak ↔ strong and
  the mismatch rules (``on_mismatch``), head-row selection;
* :mod:`rmlib.expo.extrapolation`: :func:`extrapolate`, streamed and published atomically;
* :mod:`rmlib.expo.search`: :func:`search_alpha` on one loaded model, :class:`SearchResult`;
* :mod:`rmlib.expo.commands`: the ``rmlib expo`` and ``rmlib expo search`` arguments.

Streamed safetensors reading and writing live in :mod:`rmlib.models.safetensors_io`, shared with
the LoRA merge.
"""

from rmlib.expo.commands import add_cli_arguments, add_search_arguments, cli, search_cli
from rmlib.expo.extrapolation import SIDECAR, extrapolate
from rmlib.expo.matching import ON_MISMATCH, OnMismatch
from rmlib.expo.search import COARSE_ALPHAS, SearchResult, pairwise_evaluator, plot_search, search_alpha
from rmlib.models.safetensors_io import INDEX_NAME, WEIGHTS_NAME

__all__ = ["COARSE_ALPHAS", "INDEX_NAME", "ON_MISMATCH", "OnMismatch", "SIDECAR", "SearchResult", "WEIGHTS_NAME",
           "add_cli_arguments", "add_search_arguments", "cli", "extrapolate", "pairwise_evaluator", "plot_search",
           "search_alpha", "search_cli"]
