"""Reward-model losses behind one registry: ``get_loss(name, **options)``.

Importing this package registers the built-in losses (pairwise: ``bt``, ``margin_bt``,
``scaled_bt``, ``soft_bt``; pointwise: ``mse``; distributional: ``mean_var`` (pairs), ``rating_ce``
(ratings); generative: ``justifier``; listwise: ``plackett_luce``, ``all_pairs_bt``). See :class:`RewardLoss`
for the contract and for how the trainer normalises summed losses under gradient accumulation.
"""

from rmlib.losses.distributional import MeanVarLoss, RatingCELoss
from rmlib.losses.generative import JustifierLoss
from rmlib.losses.listwise import AllPairsBradleyTerryLoss, ListwiseLoss, PlackettLuceLoss
from rmlib.losses.pairwise import (
    BradleyTerryLoss,
    MarginBradleyTerryLoss,
    PairwiseLoss,
    ScaledBradleyTerryLoss,
    SoftBradleyTerryLoss,
)
from rmlib.losses.pointwise import MISSING_TARGET, MaskedMSELoss, PointwiseLoss
from rmlib.losses.registry import (
    RewardLoss,
    UnknownLossError,
    get_loss,
    get_loss_class,
    list_losses,
    loss_options,
    register_loss,
)

__all__ = [
    "MISSING_TARGET",
    "AllPairsBradleyTerryLoss",
    "ListwiseLoss",
    "PlackettLuceLoss",
    "BradleyTerryLoss",
    "JustifierLoss",
    "MarginBradleyTerryLoss",
    "MaskedMSELoss",
    "MeanVarLoss",
    "PairwiseLoss",
    "PointwiseLoss",
    "RatingCELoss",
    "RewardLoss",
    "ScaledBradleyTerryLoss",
    "SoftBradleyTerryLoss",
    "UnknownLossError",
    "get_loss",
    "get_loss_class",
    "list_losses",
    "loss_options",
    "register_loss",
]
