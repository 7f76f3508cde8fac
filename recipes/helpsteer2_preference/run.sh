#!/usr/bin/env bash
# HelpSteer2-Preference (Wang et al., arXiv 2410.01257): helpfulness-only regression -> Scaled BT
# initialised from it -> ExPO alpha search between the two -> RewardBench evaluation.
# Usage: recipes/helpsteer2_preference/run.sh [--smoke] [--out DIR] [dotted overrides for both trainings...]
#   full scale (8 GPUs, DeepSpeed ZeRO-3): EXPO_DATA=validation_pairs.jsonl recipes/helpsteer2_preference/run.sh
#   smoke (bundled samples, MiniLM, CPU, a few minutes): recipes/helpsteer2_preference/run.sh --smoke
# No logic here: every step is an rmlib command (see README.md next to this file). Run from the repository root.
set -euo pipefail
HERE=recipes/helpsteer2_preference
. recipes/options.sh  # --smoke, --out DIR

if [[ ${SMOKE} == 1 ]]; then
  OUT="${OUT:-runs/helpsteer2_preference-smoke}"
  STAGE1="${HERE}/smoke/regression_helpfulness.yaml"
  STAGE2="${HERE}/smoke/scaled_bt.yaml"
  TRAIN=(rmlib train)
  BENCH="${HERE}/smoke/rewardbench_sample.jsonl"
  EXPO_DATA="${HERE}/smoke/validation_pairs.jsonl"
  EXPO_GRID=(--alphas 0.5 --no-refine)  # the strong model alone is the baseline row
  EVAL_ARGS=(max_length=64 batch_size=32)
else
  OUT="${OUT:-runs/helpsteer2_preference}"
  STAGE1=configs/train/helpsteer2_regression_helpfulness_llama3_8b.yaml
  STAGE2=configs/train/helpsteer2_scaled_bt_llama3_8b.yaml
  TRAIN=(accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml -m rmlib train)
  BENCH=allenai/reward-bench
  : "${EXPO_DATA:?set EXPO_DATA to held-out preference pairs for the alpha search (README.md next to this file)}"
  EXPO_GRID=()
  EVAL_ARGS=(max_length=4096 batch_size=8)
fi

# 1. stage 1: helpfulness-only regression (2 epochs), writes ${OUT}/regression/model
"${TRAIN[@]}" "${STAGE1}" "train.output_dir=${OUT}/regression" "$@"

# 2. stage 2: Scaled BT initialised from stage 1's helpfulness head (1 epoch); checkpoints every
#    train.save_every steps, the train.keep_best lowest-validation-loss ones and the last are kept
"${TRAIN[@]}" "${STAGE2}" "train.output_dir=${OUT}/scaled_bt" "model.name_or_path=${OUT}/regression/model" "$@"

# 3. the candidates: RewardBench report of every kept checkpoint (pick one; ExPO uses STRONG, default the last)
for CKPT in "${OUT}"/scaled_bt/checkpoints/step-*/; do
  rmlib eval "${CKPT}model" --suite rewardbench --data "${BENCH}" --out "${OUT}/eval/$(basename "${CKPT}")" \
    "${EVAL_ARGS[@]}"
done
STRONG="${STRONG:-${OUT}/scaled_bt/model}"

# 4. ExPO: theta = strong + alpha (strong - weak), alpha searched on held-out pairs; writes the best model
rmlib expo search --weak "${OUT}/regression/model" --strong "${STRONG}" --data "${EXPO_DATA}" \
  --out "${OUT}/expo" "${EXPO_GRID[@]}"

# 5. RewardBench report of the extrapolated model
rmlib eval "${OUT}/expo/model" --suite rewardbench --data "${BENCH}" --out "${OUT}/eval/expo" "${EVAL_ARGS[@]}"

# 6. one summary linking every stage's outputs
cat > "${OUT}/SUMMARY.md" <<SUMMARY
# HelpSteer2-Preference recipe: $( [[ ${SMOKE} == 1 ]] && echo smoke run || echo full run )

| stage | outputs |
|---|---|
| 1. helpfulness regression (\`${STAGE1}\`) | [model](regression/model), [summary](regression/summary.json), [config](regression/config.yaml) |
| 2. Scaled BT from stage 1 (\`${STAGE2}\`) | [model](scaled_bt/model), [summary](scaled_bt/summary.json), [checkpoints](scaled_bt/checkpoints) |
| 3. RewardBench of each kept checkpoint | $(for C in "${OUT}"/eval/step-*/; do printf '[%s](eval/%s/report.md) ' "$(basename "${C}")" "$(basename "${C}")"; done) |
| 4. ExPO alpha search (strong: \`${STRONG}\`) | [search table](expo/search.md), [plot](expo/search.png), [model](expo/model) |
| 5. RewardBench of the ExPO model | [report](eval/expo/report.md) |

## ExPO alpha search

$(cat "${OUT}/expo/search.md")
SUMMARY
echo "summary: ${OUT}/SUMMARY.md"
