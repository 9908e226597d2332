#!/usr/bin/env bash
# One GPU training chunk, in one device call (tools/gpu_chunk/README.md), from the repository root:
#
#   bash tools/gpu_chunk/train_chunk.sh MINUTES [options of `python -m tools.gpu_chunk run`]
#
# Installs the carried monai wheel when monai is missing, resumes from the committed compact state
# (training_state/NAME; a fresh init of the config when there is none), trains the staged shard for
# MINUTES, exports the EMA as Resources/Models/NAME's new content, runs the quick denoising check
# against NLM, and leaves the new model, state and log in $OUT (at most 8 files of <= 16 MiB).
# A call of 9 minutes holds MINUTES = 6 (install, data, export and the check take the rest).
# Without $OUT (a local try) the results go to outputs/gpu_chunk.
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${1:?usage: tools/gpu_chunk/train_chunk.sh MINUTES [run options]}
shift
CARRY=${CARRY:-.cache/gpu_carry}
OUT=${OUT:-outputs/gpu_chunk}
export PYTHONUNBUFFERED=1
if ! python3 -c "import monai" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/meddifffm-site \
        "$CARRY"/wheels/monai-*.whl
    export PYTHONPATH=/tmp/meddifffm-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true; fi
exec python3 -m tools.gpu_chunk run --minutes "$MINUTES" --out "$OUT" --carry "$CARRY" "$@"
