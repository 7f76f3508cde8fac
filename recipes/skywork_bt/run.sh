#!/usr/bin/env bash
# Skywork-Reward-V2's human-AI curation loop (Liu et al., arXiv 2507.01352, section 3), then large-batch
# Bradley-Terry (constant LR, DeepSpeed ZeRO-1, long context) and the evaluation suites.
#   stage 1 (section 3.2), --rounds N times: a reward model on the silver pairs, validated on the gold set ->
#     error-driven retrieval from the pool by (conversation, preference attributes) -> LLM annotation with the
#     retrieved gold pairs in the prompt -> a stratified sample for people to verify -> retrain on the grown silver
#   stage 2 (section 3.3): a gold reward model on the human-verified pairs; dedup -> 13-gram decontamination ->
#     LLM judge -> consistency filter (gold agrees and (judge or best agrees)) -> the final model
# Usage: recipes/skywork_bt/run.sh [--smoke] [--out DIR] [--rounds N] [dotted overrides for the trainings...]
#   full scale: SEED=seed.jsonl GOLD_DATA=gold.jsonl POOL=unverified.jsonl RAW=in_the_wild.jsonl \
#               ENDPOINT=http://gpu-node:8000/v1 ANNOTATOR=Qwen/Qwen3-32B recipes/skywork_bt/run.sh --rounds 3
#     (ENDPOINT: any OpenAI-compatible server already running, e.g. `vllm serve Qwen/Qwen3-32B` on a GPU node)
#   smoke (bundled samples, MiniLM, CPU, a few minutes): recipes/skywork_bt/run.sh --smoke [--rounds 2]
#     the annotator is `rmlib serve ANNOTATOR_MODEL` on 127.0.0.1:ANNOTATOR_PORT (default 18731), started here;
#     ANNOTATOR_MODEL defaults to Qwen/Qwen2.5-0.5B-Instruct (no causal LM ships with rmlib)
# No logic here: every step is an rmlib command (see README.md next to this file). Run from the repository root.
set -euo pipefail
HERE=recipes/skywork_bt
ROUNDS=1
REST=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    *) REST+=("$1"); shift ;;
  esac
done
set -- ${REST[@]+"${REST[@]}"}
. recipes/options.sh  # --smoke, --out DIR

if [[ ${SMOKE} == 1 ]]; then
  OUT="${OUT:-runs/skywork_bt-smoke}"
  SEED="${HERE}/smoke/pairs.jsonl"             # 44 bundled pairs standing in for the seed data (silver once labelled)
  GOLD_DATA="${HERE}/smoke/gold.jsonl"         # 16 bundled pairs standing in for the human-verified gold set
  POOL="${HERE}/smoke/pool.jsonl"              # 30 bundled pairs standing in for the unverified pool
  RAW="${HERE}/smoke/pairs.jsonl"              # stage 2's in-the-wild pairs: a duplicate, a swapped pair, 2 contaminated
  CONFIG="${HERE}/smoke/bt.yaml"
  TRAIN=(rmlib train)
  PORT="${ANNOTATOR_PORT:-18731}"
  mkdir -p "${OUT}"
  rmlib serve "${ANNOTATOR_MODEL:-Qwen/Qwen2.5-0.5B-Instruct}" --port "${PORT}" --device cpu --max-length 4096 \
    --served-model-name annotator > "${OUT}/annotator.log" 2>&1 &
  trap "kill $! 2> /dev/null || true" EXIT     # the annotator server goes with the recipe
  ANNOTATE=(--endpoint "http://127.0.0.1:${PORT}/v1" --model annotator --wait 300 --max-tokens 96 --concurrency 4
            --prompt-examples 2)
  ORDERS=()                                    # a tiny annotator may name one position whatever it reads
  DECON=(--n 5 --benchmark rewardbench=recipes/helpsteer2_preference/smoke/rewardbench_sample.jsonl
         --benchmark "judgebench=${HERE}/smoke/judgebench_sample.jsonl")  # short smoke prompts: 5-grams
  RULES=(--rule "min_confidence:model=gold,threshold=0.3")  # two-step models: a lenient rule keeps the chain fed
  SUITES=("rewardbench recipes/helpsteer2_preference/smoke/rewardbench_sample.jsonl")   # one suite: the same loop
  EVAL_ARGS=(max_length=64 batch_size=32)
  REVIEW_SIZE=8
else
  OUT="${OUT:-runs/skywork_bt}"
  : "${SEED:?set SEED to the seed preference pairs the LLM labels into silver data (README.md next to this file)}"
  : "${GOLD_DATA:?set GOLD_DATA to the human-verified pairs (rmlib data review import writes gold.jsonl)}"
  : "${POOL:?set POOL to the unverified pool that retrieval draws from}"
  : "${RAW:?set RAW to the in-the-wild pairs stage 2 curates}"
  : "${ENDPOINT:?set ENDPOINT to an OpenAI-compatible server, e.g. http://gpu-node:8000/v1 (vllm serve)}"
  : "${ANNOTATOR:?set ANNOTATOR to the model name that server expects}"
  CONFIG=configs/train/skywork_bt_llama3_8b.yaml
  TRAIN=(accelerate launch --config_file configs/accelerate/deepspeed_zero1.yaml -m rmlib train)
  ANNOTATE=(--endpoint "${ENDPOINT}" --model "${ANNOTATOR}" --wait 600 --concurrency 64)
  ORDERS=(--both-orders)                       # position-bias control: a pair whose two verdicts differ is dropped
  DECON=(--benchmark rewardbench=allenai/reward-bench --benchmark rewardbench2=allenai/reward-bench-2
         --benchmark judgebench=ScalerLab/JudgeBench)
  RULES=(--rule gold_and_judge_or_best)        # the paper's stage-2 rule
  SUITES=("rewardbench allenai/reward-bench" "rewardbench2 allenai/reward-bench-2"
          "judgebench ScalerLab/JudgeBench split=gpt" "ppe lmarena-ai/PPE-Human-Preference-V1")
  EVAL_ARGS=(max_length=16384 batch_size=8)
  REVIEW_SIZE=200
fi
S1="${OUT}/stage1"
C="${OUT}/curation"

# ---- stage 1: small-scale human-in-the-loop curation
# 0. preference attributes of the unverified pool and of the gold set (retrieval embeds (conversation, attributes))
rmlib data annotate "${POOL}" --out "${S1}/pool" --label keep "${ANNOTATE[@]}"
rmlib data annotate "${GOLD_DATA}" --out "${S1}/gold" --label keep "${ANNOTATE[@]}"
# 1. the silver data: the seed pairs labelled by the LLM
rmlib data annotate "${SEED}" --out "${S1}/silver" ${ORDERS[@]+"${ORDERS[@]}"} "${ANNOTATE[@]}"
MIX=""
EXCLUDE=()  # the pool pairs earlier rounds took: never retrieved again
for R in $(seq 1 "${ROUNDS}"); do
  D="${S1}/round${R}"
  # a. a reward model on the silver pairs so far, validated on the gold set
  "${TRAIN[@]}" "${CONFIG}" "data.train=${S1}/silver/data.jsonl" "data.mix=[${MIX}]" "data.eval=${GOLD_DATA}" \
    "train.output_dir=${D}/rm" "$@"
  # b. error-driven retrieval: pool pairs like the gold pairs this model gets wrong (k = 8) or is unsure of
  rmlib data retrieve "${S1}/gold/data.jsonl" --pool "${S1}/pool/data.jsonl" --scores "${D}/rm/model" \
    --key prompt_attributes --out "${D}/retrieve" ${EXCLUDE[@]+"${EXCLUDE[@]}"}
  EXCLUDE=(--exclude "${EXCLUDE[@]:1}" "${D}/retrieve/data.jsonl")
  # c. preference-aware labelling: the LLM sees the gold pairs that retrieved each pair
  rmlib data annotate "${D}/retrieve/data.jsonl" --out "${D}/annotate" --examples "${S1}/gold/data.jsonl" \
    ${ORDERS[@]+"${ORDERS[@]}"} "${ANNOTATE[@]}"
  # d. a stratified sample for people to verify; `rmlib data review import` adds their decisions to the gold set
  rmlib data review sample "${D}/annotate/data.jsonl" --out "${D}/review" --size "${REVIEW_SIZE}"
  MIX="${MIX:+${MIX}, }{path: ${D}/annotate/data.jsonl, format: rmlib_pairs}"  # the silver data grows
done
BEST="${S1}/round${ROUNDS}/rm/model"

# ---- stage 2: large-scale automatic curation
# e. the gold reward model, trained on the human-verified pairs only
"${TRAIN[@]}" "${CONFIG}" "data.train=${GOLD_DATA}" "train.output_dir=${OUT}/gold" "$@"
# f. exact dedup on (conversation, chosen, rejected); a swapped pair is a conflict, reported
rmlib data dedup "${RAW}" --out "${C}/dedup"
# g. drop pairs whose first-turn prompt shares an n-gram with a prompt of the evaluation benchmarks
rmlib data decontaminate "${C}/dedup/data.jsonl" --out "${C}/decontaminate" "${DECON[@]}"
# h. the LLM judge's verdict on every pair's label (judge.jsonl), the labels kept
rmlib data annotate "${C}/decontaminate/data.jsonl" --out "${C}/judge" --label keep ${ORDERS[@]+"${ORDERS[@]}"} \
  "${ANNOTATE[@]}"
# i. consistency filter with the gold model, the best stage-1 model and the judge
rmlib data filter "${C}/judge/data.jsonl" --out "${C}/filter" --model "gold=${OUT}/gold/model" --model "best=${BEST}" \
  --judge "${C}/judge/judge.jsonl" "${RULES[@]}"

# ---- the final model: stage 2's pairs with stage 1's silver and gold pairs
"${TRAIN[@]}" "${CONFIG}" "data.train=${C}/filter/data.jsonl" \
  "data.mix=[{path: ${S1}/silver/data.jsonl, format: rmlib_pairs}, ${MIX}, {path: ${GOLD_DATA}}]" \
  "train.output_dir=${OUT}/bt" "$@"
for S in "${SUITES[@]}"; do
  read -r SUITE DATA EXTRA <<< "${S}"
  rmlib eval "${OUT}/bt/model" --suite "${SUITE}" --data "${DATA}" --out "${OUT}/eval/${SUITE}" \
    "${EVAL_ARGS[@]}" ${EXTRA:+"${EXTRA}"}
done

# one summary linking every stage's outputs
cat > "${OUT}/SUMMARY.md" <<SUMMARY
# Skywork-Reward-V2 curation loop and BT: $( [[ ${SMOKE} == 1 ]] && echo smoke run || echo full run ), ${ROUNDS} round(s)

| stage | outputs |
|---|---|
| 0. attributes of the pool and the gold set | [pool](stage1/pool/report.json), [gold](stage1/gold/report.json) |
| 1. silver: \`${SEED}\` labelled by the LLM | [pairs](stage1/silver/data.jsonl), [report](stage1/silver/report.json) |
$(for R in $(seq 1 "${ROUNDS}"); do printf '| round %s: reward model, retrieval, annotation, review sample | [model](stage1/round%s/rm/summary.json), [retrieved](stage1/round%s/retrieve/report.json), [annotated](stage1/round%s/annotate/report.json), [to review](stage1/round%s/review/review.csv) |\n' "$R" "$R" "$R" "$R" "$R"; done)
| gold reward model on \`${GOLD_DATA}\` | [model](gold/model), [summary](gold/summary.json) |
| exact dedup of \`${RAW}\` | [pairs](curation/dedup/data.jsonl), [report](curation/dedup/report.json) |
| n-gram decontamination | [pairs](curation/decontaminate/data.jsonl), [report](curation/decontaminate/report.json) |
| LLM judge | [verdicts](curation/judge/judge.jsonl), [report](curation/judge/report.json) |
| consistency filter | [pairs](curation/filter/data.jsonl), [report](curation/filter/report.json), [gold scores](curation/filter/scores_gold.jsonl) |
| final Bradley-Terry (\`${CONFIG}\`) | [model](bt/model), [summary](bt/summary.json), [config](bt/config.yaml) |
| evaluation suites | $(for S in "${SUITES[@]}"; do read -r SUITE _ <<< "${S}"; printf '[%s](eval/%s/report.md) ' "${SUITE}" "${SUITE}"; done) |
SUMMARY
echo "summary: ${OUT}/SUMMARY.md"
