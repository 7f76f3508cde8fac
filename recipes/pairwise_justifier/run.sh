#!/usr/bin/env bash
# Pairwise Justifier (HelpSteer2-Preference, Wang et al., arXiv 2410.01257, section 3.2): a causal LM
# fine-tuned to write why one response is better, ending in a verdict, then judged on RewardBench in both
# response orders (accuracy per order, position bias).
# Usage: recipes/pairwise_justifier/run.sh [--smoke] [--out DIR] [dotted overrides for the training...]
#   full scale (8 GPUs, DeepSpeed ZeRO-3): recipes/pairwise_justifier/run.sh
#   smoke (bundled judge sample, CPU): recipes/pairwise_justifier/run.sh --smoke model.name_or_path=CAUSAL_LM_DIR
#     (no causal LM ships with rmlib: without the override the smoke loads Qwen/Qwen2.5-0.5B-Instruct)
# No logic here: every step is an rmlib command (see README.md next to this file). Run from the repository root.
set -euo pipefail
. recipes/options.sh  # --smoke, --out DIR

if [[ ${SMOKE} == 1 ]]; then
  OUT="${OUT:-runs/pairwise_justifier-smoke}"
  CONFIG=configs/train/justifier_sample.yaml
  TRAIN=(rmlib train)
  SMOKE_ARGS=(train.max_steps=2 train.per_device_batch_size=2 data.max_length=256 train.progress=false)
  BENCH=recipes/helpsteer2_preference/smoke/rewardbench_sample.jsonl
  EVAL_ARGS=(judge.max_new_tokens=8 batch_size=12)
else
  OUT="${OUT:-runs/pairwise_justifier}"
  CONFIG=configs/train/justifier_helpsteer2_full.yaml
  TRAIN=(accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml -m rmlib train)
  SMOKE_ARGS=()
  BENCH=allenai/reward-bench
  EVAL_ARGS=(judge.max_new_tokens=1024 batch_size=8)
fi

# 1. fine-tune the justifier (token cross-entropy on justifications ending in "@Response N is ... better")
"${TRAIN[@]}" "${CONFIG}" "train.output_dir=${OUT}/justifier" "${SMOKE_ARGS[@]}" "$@"

# 2. judge RewardBench pairs in both orders: accuracy per order and position bias
rmlib eval "${OUT}/justifier/model" --suite rewardbench --data "${BENCH}" --out "${OUT}/eval/rewardbench" \
  judge.both_orders=true "${EVAL_ARGS[@]}"

# 3. one summary linking every stage's outputs
cat > "${OUT}/SUMMARY.md" <<SUMMARY
# Pairwise Justifier recipe: $( [[ ${SMOKE} == 1 ]] && echo smoke run || echo full run )

| stage | outputs |
|---|---|
| 1. justifier training (\`${CONFIG}\`) | [model](justifier/model), [summary](justifier/summary.json), [config](justifier/config.yaml) |
| 2. RewardBench, both orders | [report](eval/rewardbench/report.md) |
SUMMARY
echo "summary: ${OUT}/SUMMARY.md"
