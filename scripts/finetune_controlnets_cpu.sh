#!/usr/bin/env bash
# Fine-tune (or continue) shipped ControlNets on CPU, on the installed base model
# Resources/Models/meddifffm-default (frozen; trained in GPU chunks, docs/TRAINING.md section 8), and
# install them in Resources/Models.
#
#   [TASKS="superres lesion"] scripts/finetune_controlnets_cpu.sh [MINUTES_PER_CONTROLNET]
#
# TASKS defaults to superres alone: the shipped lesion ControlNet was trained on a GPU (10,000 steps),
# and a CPU run installed over it would replace it with a far shorter one. Name lesion only to start
# its CPU starter again (e.g. after the base changed).
#
# Each ControlNet's run folder in .cache/runs/ is resumed when it exists, so calling this again
# continues where it stopped (each call adds the given minutes). A run made against an older base is
# refused by the loader at export; delete .cache/runs/cpu_{superres,lesion}_1mm to start afresh on a
# new base. One torch thread per run: the other core stays free. Needs the shared CT at
# ../shared/data/ct (or DATA_ROOT=...) for the 1 mm cache.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-35}
TASKS=${TASKS:-superres}
DATA_ROOT=${DATA_ROOT:-../shared/data/ct}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
CLI="python -m MedDiffFMLib.cli"

# 1. The 1 mm cache (the same one `python -m tools.gpu_chunk stage` prepares; reused when up to date).
$CLI prepare configs/shared_ct_manifest.json .cache/gpu/cache_1mm --spacing 1 --config default --dtype uint8 --data-root "$DATA_ROOT" \
    --progress none

resume_flag() { [ -d "$1/checkpoints" ] && ls "$1"/checkpoints/step-*.pt >/dev/null 2>&1 && echo --resume || true; }

# 2. The ControlNets on the installed base.
for task in $TASKS; do
    $CLI finetune "configs/finetune_${task}_cpu.json" $(resume_flag ".cache/runs/cpu_${task}_1mm") \
        --max-minutes "$MINUTES" --progress none
    $CLI finetune "configs/finetune_${task}_cpu.json" --export-only --export-dir "Resources/Models/meddifffm-${task}" \
        --progress none
done
