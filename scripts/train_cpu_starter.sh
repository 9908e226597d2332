#!/usr/bin/env bash
# Train (or continue) the shipped CPU starter models and install them in Resources/Models.
#
#   scripts/train_cpu_starter.sh [BASE_MINUTES] [CONTROLNET_MINUTES]
#
# Every stage resumes its run folder in .cache/runs/ when it exists, so calling this again continues
# training where it stopped (each call adds the given minutes). One torch thread: the other core stays
# free. Needs the shared CT at ../shared/data/ct (or DATA_ROOT=...).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_MINUTES=${1:-60}
CONTROL_MINUTES=${2:-20}
DATA_ROOT=${DATA_ROOT:-../shared/data/ct}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
CLI="python -m MedDiffFMLib.cli"

# 1. The cache (reused when it is up to date).
$CLI prepare configs/shared_ct_manifest.json .cache/ct_cache_1.5mm --spacing 1.5 --data-root "$DATA_ROOT" --progress none

resume_flag() { [ -d "$1/checkpoints" ] && ls "$1"/checkpoints/step-*.pt >/dev/null 2>&1 && echo --resume || true; }

# 2. The base model.
$CLI train configs/cpu_starter.json $(resume_flag .cache/runs/cpu_starter) --max-minutes "$BASE_MINUTES" --progress none
mkdir -p Resources/Models
$CLI train configs/cpu_starter.json --export-only --export-dir Resources/Models/meddifffm-default --progress none

# 3. The ControlNets on the installed base: their runs continue on the (re-installed) base and the
#    export records its new fingerprint (delete .cache/runs/cpu_{superres,lesion} to start them afresh).
for task in superres lesion; do
    if [ "$CONTROL_MINUTES" != "0" ]; then
        $CLI finetune "configs/finetune_${task}_cpu.json" $(resume_flag ".cache/runs/cpu_${task}") \
            --max-minutes "$CONTROL_MINUTES" --progress none
        $CLI finetune "configs/finetune_${task}_cpu.json" --export-only --export-dir "Resources/Models/meddifffm-${task}" \
            --progress none
    fi
done

# 4. Roles of the shipped models.
python - <<'PY'
import json
from pathlib import Path
roles = {"base": "meddifffm-default"}
for task in ("superres", "lesion"):
    if (Path("Resources/Models") / f"meddifffm-{task}" / "manifest.json").is_file():
        roles[task] = f"meddifffm-{task}"
Path("Resources/Models/models.json").write_text(json.dumps({"roles": roles}, indent=2) + "\n")
print("Resources/Models/models.json:", roles)
PY
