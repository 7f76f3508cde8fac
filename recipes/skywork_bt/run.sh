#!/usr/bin/env bash
# Skywork-Reward-V2-style pipeline (Liu et al., arXiv 2507.01352): a gold reward model on human-verified
# pairs -> curation (exact dedup -> n-gram decontamination against the evaluation benchmarks -> reward-model
# consistency filter with the gold model) -> large-batch
# Bradley-Terry (constant LR, DeepSpeed ZeRO-1, long context) -> the evaluation suites -> error-driven
# retrieval of the next annotation batch with the new model.
# Usage: recipes/skywork_bt/run.sh [--smoke] [--out DIR] [dotted overrides for the training...]
#   full scale: GOLD_DATA=verified.jsonl RAW=pairs.jsonl BEST=best_rm JUDGE=verdicts.jsonl POOL=unlabeled.jsonl \
#               recipes/skywork_bt/run.sh
#   smoke (bundled samples, MiniLM, CPU, a few minutes): recipes/skywork_bt/run.sh --smoke
# No logic here: every step is an rmlib command (see README.md next to this file). Run from the repository root.
set -euo pipefail
HERE=recipes/skywork_bt
. recipes/options.sh  # --smoke, --out DIR

if [[ ${SMOKE} == 1 ]]; then
  OUT="${OUT:-runs/skywork_bt-smoke}"
  GOLD_DATA="${HERE}/smoke/gold.jsonl"        # 16 bundled pairs standing in for the human-verified gold set
  RAW="${HERE}/smoke/pairs.jsonl"              # 44 bundled pairs: a duplicate, a swapped pair, 2 contaminated
  POOL="${HERE}/smoke/pool.jsonl"              # 30 bundled pairs standing in for the unlabeled pool
  CONFIG="${HERE}/smoke/bt.yaml"
  TRAIN=(rmlib train)
  # the benchmark prompts of the smoke files are short, so the smoke matches 5-grams instead of 13-grams
  DECON=(--n 5 --benchmark rewardbench=recipes/helpsteer2_preference/smoke/rewardbench_sample.jsonl
         --benchmark "judgebench=${HERE}/smoke/judgebench_sample.jsonl")
  # the smoke has no judge and no other model: drop the pairs the gold model finds likely mislabelled
  FILTER=(--model "gold=${OUT}/gold/model" --rule "min_confidence:model=gold,threshold=0.3")
  SUITES=("rewardbench recipes/helpsteer2_preference/smoke/rewardbench_sample.jsonl")   # one suite: the same loop
  EVAL_ARGS=(max_length=64 batch_size=32)
else
  OUT="${OUT:-runs/skywork_bt}"
  : "${RAW:?set RAW to the preference pairs to curate (README.md next to this file)}"
  : "${GOLD_DATA:?set GOLD_DATA to the human-verified preference pairs the gold model trains on}"
  : "${BEST:?set BEST to the current best reward model (directory or rmlib score file)}"
  : "${JUDGE:?set JUDGE to the verdicts of an LLM judge on RAW, JSONL rows with index and agrees}"
  : "${POOL:?set POOL to the unlabeled pairs that retrieval draws the next batch from}"
  CONFIG=configs/train/skywork_bt_llama3_8b.yaml
  TRAIN=(accelerate launch --config_file configs/accelerate/deepspeed_zero1.yaml -m rmlib train)
  DECON=(--benchmark rewardbench=allenai/reward-bench --benchmark rewardbench2=allenai/reward-bench-2
         --benchmark judgebench=ScalerLab/JudgeBench)
  FILTER=(--model "gold=${OUT}/gold/model" --model "best=${BEST}" --rule gold_and_judge_or_best --judge "${JUDGE}")
  SUITES=("rewardbench allenai/reward-bench" "rewardbench2 allenai/reward-bench-2"
          "judgebench ScalerLab/JudgeBench split=gpt" "ppe lmarena-ai/PPE-Human-Preference-V1")
  EVAL_ARGS=(max_length=16384 batch_size=8)
fi
C="${OUT}/curation"

# 0. the gold reward model, trained on the human-verified pairs
"${TRAIN[@]}" "${CONFIG}" "data.train=${GOLD_DATA}" "train.output_dir=${OUT}/gold" "$@"

# 1. exact dedup on (conversation, chosen, rejected); a swapped pair is a conflict, reported
rmlib data dedup "${RAW}" --out "${C}/dedup"
# 2. drop pairs whose first-turn prompt shares an n-gram with a prompt of the evaluation benchmarks
rmlib data decontaminate "${C}/dedup/data.jsonl" --out "${C}/decontaminate" "${DECON[@]}"
# 3. reward-model consistency filter (Skywork-Reward-V2 stage 2), the gold model's rewards kept as scores_gold.jsonl
rmlib data filter "${C}/decontaminate/data.jsonl" --out "${C}/filter" "${FILTER[@]}"

# 4. large-batch Bradley-Terry on the curated pairs
"${TRAIN[@]}" "${CONFIG}" "data.train=${C}/filter/data.jsonl" "train.output_dir=${OUT}/bt" "$@"

# 5. the evaluation suites
for S in "${SUITES[@]}"; do
  read -r SUITE DATA EXTRA <<< "${S}"
  rmlib eval "${OUT}/bt/model" --suite "${SUITE}" --data "${DATA}" --out "${OUT}/eval/${SUITE}" \
    "${EVAL_ARGS[@]}" ${EXTRA:+"${EXTRA}"}
done

# 6. error-driven retrieval (Skywork-Reward-V2 stage 1): the pool pairs most like those the new model gets
#    wrong or is unsure of, the next batch to annotate
rmlib data retrieve "${C}/filter/data.jsonl" --pool "${POOL}" --scores "${OUT}/bt/model" --out "${C}/retrieve"

# 7. one summary linking every stage's outputs
cat > "${OUT}/SUMMARY.md" <<SUMMARY
# Skywork-style BT recipe: $( [[ ${SMOKE} == 1 ]] && echo smoke run || echo full run )

| stage | outputs |
|---|---|
| 0. gold reward model on \`${GOLD_DATA}\` | [model](gold/model), [summary](gold/summary.json) |
| 1. exact dedup of \`${RAW}\` | [pairs](curation/dedup/data.jsonl), [report](curation/dedup/report.json) |
| 2. n-gram decontamination | [pairs](curation/decontaminate/data.jsonl), [report](curation/decontaminate/report.json) |
| 3. consistency filter | [pairs](curation/filter/data.jsonl), [report](curation/filter/report.json), [gold scores](curation/filter/scores_gold.jsonl) |
| 4. Bradley-Terry (\`${CONFIG}\`) | [model](bt/model), [summary](bt/summary.json), [config](bt/config.yaml) |
| 5. evaluation suites | $(for S in "${SUITES[@]}"; do read -r SUITE _ <<< "${S}"; printf '[%s](eval/%s/report.md) ' "${SUITE}" "${SUITE}"; done) |
| 6. next annotation batch (retrieval from \`${POOL}\`) | [pairs](curation/retrieve/data.jsonl), [report](curation/retrieve/report.json) |
SUMMARY
echo "summary: ${OUT}/SUMMARY.md"
