#!/usr/bin/env bash
# Fine-tune a LoRA (or QLoRA) reward model on one consumer GPU, export it merged, evaluate it.
# Usage: recipes/lora_consumer_gpu/run.sh [lora_llama3_8b_24gb|qlora_qwen7b_24gb] [dotted overrides...]
# No logic here: every step is an rmlib command (see README.md next to this file).
set -euo pipefail
NAME="${1:-lora_llama3_8b_24gb}"
shift || true
CONFIG="configs/train/${NAME}.yaml"
RUN="runs/${NAME}"

# 1. what fits: estimated peak memory of the settings around this config
rmlib plan "${CONFIG}" --budget 24

# 2. train: writes ${RUN}/model, an adapter directory (adapter + full reward head + tokenizer), checked
#    by re-scoring a probe batch after reloading
accelerate launch --config_file configs/accelerate/single_gpu.yaml -m rmlib train "${CONFIG}" \
  "train.output_dir=${RUN}" "$@"

# 3. merge into a plain AutoModelForSequenceClassification directory (checked the same way)
rmlib export "${RUN}/model" --out "${RUN}/merged"

# 4. score held-out pairs with the merged model
rmlib eval "${RUN}/merged" --suite pairs --data HuggingFaceH4/ultrafeedback_binarized --out "${RUN}/eval" \
  split=test_prefs max_length=4096
