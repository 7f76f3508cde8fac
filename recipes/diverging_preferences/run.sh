#!/usr/bin/env bash
# Diverging Preferences (Zhang et al., arXiv 2410.14632): Bradley-Terry and MSE reward models trained on
# aggregated labels and on every individual annotation (data.annotations=all), and the two distributional
# models (mean_var on the pairs' votes, rating_ce on the annotators' ratings); then the diverging-preference
# analysis of each model (rmlib eval --suite divergence: reward gaps per annotator-agreement class, how well
# each model tells diverging pairs from high-agreement ones (AUROC), calibration), and one table of all six.
# Usage: recipes/diverging_preferences/run.sh [--smoke] [--out DIR] [dotted overrides for every training...]
#   full scale: DIVERGENCE_DATA=heldout_multipref.jsonl recipes/diverging_preferences/run.sh
#   smoke (bundled samples, MiniLM, CPU, a few minutes): recipes/diverging_preferences/run.sh --smoke
# No logic here: every step is an rmlib command (see README.md next to this file). Run from the repository root.
set -euo pipefail
HERE=recipes/diverging_preferences
. recipes/options.sh  # --smoke, --out DIR

if [[ ${SMOKE} == 1 ]]; then
  OUT="${OUT:-runs/diverging_preferences-smoke}"
  BT="${HERE}/smoke/bt.yaml"
  MSE="${HERE}/smoke/mse.yaml"
  MEAN_VAR="${HERE}/smoke/mean_var.yaml"
  RATING_CE="${HERE}/smoke/rating_ce.yaml"
  TRAIN=(rmlib train)
  DIVERGENCE_DATA=rmlib/data/samples/formats/multipref.jsonl   # 6 bundled MultiPref records with their votes
  EVAL_ARGS=(max_length=64 batch_size=32)
else
  OUT="${OUT:-runs/diverging_preferences}"
  BT=configs/train/diverging_bt_multipref_llama3_8b.yaml
  MSE=configs/train/diverging_mse_helpsteer2_llama3_8b.yaml
  MEAN_VAR=configs/train/diverging_mean_var_multipref_llama3_8b.yaml
  RATING_CE=configs/train/diverging_rating_ce_helpsteer2_llama3_8b.yaml
  TRAIN=(accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml -m rmlib train)
  : "${DIVERGENCE_DATA:?set DIVERGENCE_DATA to held-out pairs with per-annotator votes (README.md next to this file)}"
  EVAL_ARGS=(max_length=4096 batch_size=8)
fi

# 1-4. the four models: {BT, MSE} x {aggregated labels, every annotation}
"${TRAIN[@]}" "${BT}" data.annotations=aggregate "train.output_dir=${OUT}/bt_aggregate" "$@"
"${TRAIN[@]}" "${BT}" data.annotations=all "train.output_dir=${OUT}/bt_all" "$@"
"${TRAIN[@]}" "${MSE}" data.annotations=aggregate "train.output_dir=${OUT}/mse_aggregate" "$@"
"${TRAIN[@]}" "${MSE}" data.annotations=all "train.output_dir=${OUT}/mse_all" "$@"
# 5-6. the distributional models: mean_var (every vote, data.annotations=all) and rating_ce (every rating)
"${TRAIN[@]}" "${MEAN_VAR}" "train.output_dir=${OUT}/mean_var" "$@"
"${TRAIN[@]}" "${RATING_CE}" "train.output_dir=${OUT}/rating_ce" "$@"

# 7. diverging-preference analysis of each model: BT models by sigma(|r_a - r_b|), MSE models by |r_a - r_b|,
#    distributional models by their own P(A > B) and spread (read from the model's config, no option needed)
for RUN in bt_aggregate bt_all mean_var rating_ce; do
  rmlib eval "${OUT}/${RUN}/model" --suite divergence --data "${DIVERGENCE_DATA}" --out "${OUT}/divergence/${RUN}" \
    options.model_type=bt "${EVAL_ARGS[@]}"
done
for RUN in mse_aggregate mse_all; do
  rmlib eval "${OUT}/${RUN}/model" --suite divergence --data "${DIVERGENCE_DATA}" --out "${OUT}/divergence/${RUN}" \
    options.model_type=regression "${EVAL_ARGS[@]}"
done

# 8. one table: the headline metric per agreement class, the AUROC of each signal, the calibration error
rmlib compare "BT (aggregated)=${OUT}/divergence/bt_aggregate" "BT (every annotation)=${OUT}/divergence/bt_all" \
  "MSE (aggregated)=${OUT}/divergence/mse_aggregate" "MSE (every annotation)=${OUT}/divergence/mse_all" \
  "mean_var=${OUT}/divergence/mean_var" "rating_ce=${OUT}/divergence/rating_ce" \
  --metrics model_type 'metric.*' 'auroc.*' ece --title "Diverging preferences: every model" \
  --out "${OUT}/divergence/comparison.md"

# 9. one summary linking every stage's outputs
cat > "${OUT}/SUMMARY.md" <<SUMMARY
# Diverging Preferences recipe: $( [[ ${SMOKE} == 1 ]] && echo smoke run || echo full run )

Divergence data: \`${DIVERGENCE_DATA}\`.

| model | training labels | run | divergence analysis |
|---|---|---|---|
| BT (\`${BT}\`) | aggregated | [model](bt_aggregate/model), [summary](bt_aggregate/summary.json) | [report](divergence/bt_aggregate/report.md) |
| BT | every annotation | [model](bt_all/model), [summary](bt_all/summary.json) | [report](divergence/bt_all/report.md) |
| MSE (\`${MSE}\`) | aggregated | [model](mse_aggregate/model), [summary](mse_aggregate/summary.json) | [report](divergence/mse_aggregate/report.md) |
| MSE | every annotation | [model](mse_all/model), [summary](mse_all/summary.json) | [report](divergence/mse_all/report.md) |
| mean_var (\`${MEAN_VAR}\`) | every vote | [model](mean_var/model), [summary](mean_var/summary.json) | [report](divergence/mean_var/report.md) |
| rating_ce (\`${RATING_CE}\`) | every rating | [model](rating_ce/model), [summary](rating_ce/summary.json) | [report](divergence/rating_ce/report.md) |

All six side by side: [divergence/comparison.md](divergence/comparison.md).
SUMMARY
echo "summary: ${OUT}/SUMMARY.md"
