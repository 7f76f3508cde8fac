"""The built-in formats, in the order detection and ``rmlib data`` list them (registered by the package)."""

from __future__ import annotations

from rmlib.data.formats.canonical import (
    _convert_rmlib_judge,
    _convert_rmlib_pairs,
    _convert_rmlib_ratings,
    _detect_rmlib_judge,
    _detect_rmlib_pairs,
    _detect_rmlib_ratings,
)
from rmlib.data.formats.helpsteer import (
    _check_prompt_pairs,
    _convert_helpsteer2,
    _convert_helpsteer2_disagreements,
    _convert_helpsteer2_justifier,
    _convert_helpsteer2_preference,
    _detect_helpsteer2,
    _detect_helpsteer2_disagreements,
    _detect_helpsteer2_preference,
)
from rmlib.data.formats.multipref import _convert_multipref, _convert_multipref_sum, _detect_multipref
from rmlib.data.formats.nemo import (
    _convert_nemo_bt,
    _convert_nemo_regression,
    _detect_nemo_bt,
    _detect_nemo_regression,
    _pair_lines,
)
from rmlib.data.formats.preference import (
    _convert_hh_rlhf,
    _convert_skywork,
    _convert_trl,
    _convert_ultrafeedback,
    _detect_hh,
    _detect_skywork,
    _detect_trl,
    _detect_ultrafeedback,
)
from rmlib.data.formats.ranked import (
    _convert_rewardbench2,
    _convert_rmlib_lists,
    _detect_rewardbench2,
    _detect_rmlib_lists,
    _detect_ultrafeedback_raw,
    _ultrafeedback_raw,
)
from rmlib.data.formats.registry import FormatSpec

BUILTIN: dict[str, FormatSpec] = {
    "trl": FormatSpec("pairs", _detect_trl, _convert_trl, specificity=1,
                      doc="TRL preference: standard/conversational × explicit/implicit prompt, optional margin"),
    "hh_rlhf": FormatSpec("pairs", _detect_hh, _convert_hh_rlhf, doc="Anthropic/hh-rlhf transcripts"),
    "ultrafeedback": FormatSpec("pairs", _detect_ultrafeedback, _convert_ultrafeedback,
                                doc="HuggingFaceH4/ultrafeedback_binarized"),
    "skywork": FormatSpec("pairs", _detect_skywork, _convert_skywork, doc="Skywork-Reward-Preference-80K"),
    "helpsteer2": FormatSpec("ratings", _detect_helpsteer2, _convert_helpsteer2, prepare=_check_prompt_pairs,
                             doc="nvidia/HelpSteer2 ratings (positional pairs verified)"),
    "helpsteer2_preference": FormatSpec("pairs", _detect_helpsteer2_preference, _convert_helpsteer2_preference,
                                        doc="nvidia/HelpSteer2 data_dir=preference"),
    "helpsteer2_disagreements": FormatSpec("ratings", _detect_helpsteer2_disagreements,
                                           _convert_helpsteer2_disagreements,
                                           doc="nvidia/HelpSteer2 data_dir=disagreements"),
    "multipref": FormatSpec("pairs", _detect_multipref, _convert_multipref,
                            doc="allenai/multipref default config, majority vote"),
    "multipref_sum": FormatSpec("pairs", _detect_multipref, _convert_multipref_sum, specificity=1,
                                doc="allenai/multipref default config, summed vote strengths"),
    "nemo_regression": FormatSpec("ratings", _detect_nemo_regression, _convert_nemo_regression,
                                  doc="NeMo-Aligner regression JSONL {text, label[9]}"),
    "nemo_bt": FormatSpec("pairs", _detect_nemo_bt, _convert_nemo_bt, prepare=_pair_lines,
                          doc="NeMo-Aligner binary_ranking JSONL (line pairs)"),
    "rmlib_pairs": FormatSpec("pairs", _detect_rmlib_pairs, _convert_rmlib_pairs, doc="canonical PreferencePair"),
    "rmlib_ratings": FormatSpec("ratings", _detect_rmlib_ratings, _convert_rmlib_ratings,
                                doc="canonical RatedResponse"),
    "rmlib_judge": FormatSpec("judge", _detect_rmlib_judge, _convert_rmlib_judge, doc="canonical JudgeExample"),
    "rmlib_lists": FormatSpec("lists", _detect_rmlib_lists, _convert_rmlib_lists,
                              doc="canonical RankedList: prompt, k responses, scores or ranks (ties allowed)"),
    "ultrafeedback_raw": FormatSpec("lists", _detect_ultrafeedback_raw, _ultrafeedback_raw("fine-grained_score"),
                                    doc="openbmb/UltraFeedback raw rows: the completions ranked by fine-grained_score"),
    "ultrafeedback_raw_overall": FormatSpec("lists", _detect_ultrafeedback_raw, _ultrafeedback_raw("overall_score"),
                                            specificity=1,
                                            doc="openbmb/UltraFeedback raw rows ranked by overall_score"),
    "rewardbench2": FormatSpec("lists", _detect_rewardbench2, _convert_rewardbench2,
                               doc="allenai/reward-bench-2 rows as lists: correct responses tied above the others"),
    # never detected (a HelpSteer2-Preference file reads as pairs unless this is named): judge examples
    "helpsteer2_justifier": FormatSpec("judge", lambda r: False, _convert_helpsteer2_justifier, specificity=0,
                                       doc="HelpSteer2-Preference as Pairwise Justifier examples (the paper's "
                                           "Overall Preference Justification set, rmlib.data.judge)"),
}
