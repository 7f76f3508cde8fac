#!/usr/bin/env bash
# Fine-tune a LoRA (or QLoRA) reward model on one consumer GPU, export it merged, evaluate it.
# Usage: recipes/lora_consumer_gpu/run.sh [--smoke] [--out DIR] [lora_llama3_8b_24gb|qlora_qwen7b_24gb] [dotted overrides...]
#   smoke (bundled samples, MiniLM with LoRA, CPU, a few minutes): recipes/lora_consumer_gpu/run.sh --smoke
# No logic here: every step is an rmlib command (see README.md next to this file). Run from the repository root.
set -euo pipefail
. recipes/options.sh  # --smoke, --out DIR
NAME="${1:-lora_llama3_8b_24gb}"
shift || true
CONFIG="configs/train/${NAME}.yaml"

if [[ ${SMOKE} == 1 ]]; then
  RUN="${OUT:-runs/lora_consumer_gpu-smoke}"
  TRAIN_CONFIG=recipes/lora_consumer_gpu/smoke/lora_minilm.yaml
  TRAIN=(rmlib train)
  EXPORT_ARGS=(--device cpu)
  EVAL=(--data recipes/helpsteer2_preference/smoke/validation_pairs.jsonl max_length=64)
else
  RUN="${OUT:-runs/${NAME}}"
  TRAIN_CONFIG="${CONFIG}"
  TRAIN=(accelerate launch --config_file configs/accelerate/single_gpu.yaml -m rmlib train)
  EXPORT_ARGS=()
  EVAL=(--data HuggingFaceH4/ultrafeedback_binarized split=test_prefs max_length=4096)
fi

# 1. what fits: estimated peak memory of the settings around this config (the GPU config, also in --smoke)
rmlib plan "${CONFIG}" --budget 24

# 2. train: writes ${RUN}/model, an adapter directory (adapter + full reward head + tokenizer), checked
#    by re-scoring a probe batch after reloading
"${TRAIN[@]}" "${TRAIN_CONFIG}" "train.output_dir=${RUN}" "$@"

# 3. merge into a plain AutoModelForSequenceClassification directory (checked the same way)
rmlib export "${RUN}/model" --out "${RUN}/merged" "${EXPORT_ARGS[@]}"

# 4. score held-out pairs with the merged model
rmlib eval "${RUN}/merged" --suite pairs --out "${RUN}/eval" "${EVAL[@]}"

# 5. one summary linking every stage's outputs
cat > "${RUN}/SUMMARY.md" <<SUMMARY
# LoRA consumer-GPU recipe: $( [[ ${SMOKE} == 1 ]] && echo smoke run || echo full run )

| stage | outputs |
|---|---|
| 1. memory plan of \`${CONFIG}\` | printed by \`rmlib plan\` (not a file) |
| 2. LoRA training (\`${TRAIN_CONFIG}\`) | [adapter directory](model), [summary](summary.json), [config](config.yaml) |
| 3. merged export | [model](merged) |
| 4. held-out pairwise accuracy | [report](eval/report.md) |
SUMMARY
echo "summary: ${RUN}/SUMMARY.md"
