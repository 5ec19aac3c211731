#!/usr/bin/env bash
# Gated compression, as a CI job runs it: prune a trained classifier structurally, then quantize
# it to int8 for ONNX Runtime, each step refused (exit 1, nothing written) when it costs more
# than MAX_DROP points of held-out accuracy. The same two commands as github-actions.yml, here
# so they can run (and be debugged) on a laptop first.
#
#   examples/ci/gate.sh MODEL DATA [OUTDIR]
#
# MODEL  a checkpoint folder (save_pretrained layout) or hub id of a sequence classifier
# DATA   a .csv/.tsv/.jsonl/.parquet file with text and label columns; squeeze splits it by
#        content hash: recovery fine-tuning uses the train part, accuracy the unseen test part
# OUTDIR where OUTDIR/pruned (with prune.json) and OUTDIR/int8 (with quantize.json) go;
#        default ./compressed. Both are replaced on every run, so a stale output from an earlier
#        run never passes for this one's.
#
# Settings (environment variables, defaults in brackets):
#   HEADS [0.3]  FFN [0.5]     fractions of attention heads / FFN neurons removed
#   FINETUNE_STEPS [100]       recovery fine-tuning steps after pruning
#   MAX_DROP [1.0]             allowed accuracy drop per step, in points
#   MAX_LENGTH [128]           tokens per example
#   DATA_OPTS []               more data options, e.g. "--text-column review --label-column stars"
#   SQUEEZE [squeeze]          the squeeze command
#
# Exit codes are squeeze's: 0 ok, 1 a gate failed (the accuracy drop was too large), 2 usage
# error, 3 bad input (missing checkpoint, bad data), 4 unsupported (architecture, task),
# 5 a compression step failed validation. Anything but 0 should fail the CI job.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 MODEL DATA [OUTDIR]" >&2
    exit 2
fi
MODEL=$1
DATA=$2
OUT=${3:-compressed}
SQUEEZE=${SQUEEZE:-squeeze}
read -r -a DATA_ARGS <<< "${DATA_OPTS:-}"
DATA_ARGS=(--data "$DATA" "${DATA_ARGS[@]}" --max-length "${MAX_LENGTH:-128}")

# What each exit code means, for the one line a failed CI log should end with.
MEANING=([1]="a gate failed" [2]="usage error" [3]="bad input" [4]="unsupported"
         [5]="a step failed validation")

run() {
    local code=0
    "$@" || code=$?
    if ((code != 0)); then
        echo "gate.sh: $2 exited $code (${MEANING[$code]:-unexpected error})" >&2
        exit "$code"
    fi
}

mkdir -p "$OUT"
rm -rf "$OUT/pruned" "$OUT/int8"

# 1. Structured pruning: physically removes heads and FFN neurons (faster in PyTorch and ONNX),
#    chosen by Taylor importance on the data, then recovery fine-tuning on its train part.
run "$SQUEEZE" prune "$MODEL" --method structured --heads "${HEADS:-0.3}" --ffn "${FFN:-0.5}" \
    "${DATA_ARGS[@]}" --finetune-steps "${FINETUNE_STEPS:-100}" \
    --max-accuracy-drop "${MAX_DROP:-1.0}" -o "$OUT/pruned" --quiet

# 2. Dynamic int8 for ONNX Runtime: validated fp32 export, fused attention, int8 weights. The
#    gate compares the int8 model with the pruned one, so the total cost is at most 2 x MAX_DROP.
run "$SQUEEZE" quantize "$OUT/pruned" --dtype int8 "${DATA_ARGS[@]}" \
    --max-accuracy-drop "${MAX_DROP:-1.0}" -o "$OUT/int8" --quiet

echo "gate.sh: passed; summaries in $OUT/pruned/prune.json and $OUT/int8/quantize.json"
