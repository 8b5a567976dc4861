#!/usr/bin/env bash
# The GPU checks, as one prepared run on a lent CUDA machine (CI never has one):
#   1. the CUDA-only test (tests/test_placement.py: in-memory splits move to the GPU once),
#   2. one short run of each GPU switch through the command line (bf16-mixed, channels-last,
#      torch.compile) on the CNN, its metrics.json kept,
#   3. `scripts/benchmark.py --suite gpu`: cnn and resnet vs a plain loop, compile both ways.
# Each step has its own time limit, so the whole stays under 9 minutes; logs go to $OUT (the
# device tool's folder; ./gpu-check elsewhere).
#
# The device image has torch, Lightning, torchmetrics, scikit-learn and tensorboard but not
# Hydra, OmegaConf, ANTLR or kornia: their wheels (Python 3.12) travel in .whl/, which git
# ignores (.git/info/exclude); fetch them on a machine with pip's registry:
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 -d .whl \
#     hydra-core==1.3.8 omegaconf==2.3.1 kornia==0.9.0 kornia_rs==0.2.0
#   python -m pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3   # an sdist on PyPI
# then: device run, command `bash scripts/gpu_check.sh`, carry [".whl"], timeout_s 600.
set -uo pipefail
out=${OUT:-gpu-check}
mkdir -p "$out"
if ! python3 -c "import hydra, kornia" 2>/dev/null; then  # the device image: from .whl/
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
gpu="torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device'"
python3 -c "import torch; print('torch', torch.__version__, $gpu)" | tee "$out/device.txt" || exit 1

timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_placement.py 2>&1 \
    | tee "$out/tests.log"

switches="trainer.precision=bf16-mixed trainer.channels_last=true trainer.compile=true"
timeout 150 python3 train.py model=cnn $switches trainer.max_epochs=3 \
    hydra.run.dir=/tmp/cnn_switches 2>&1 | tee "$out/train.log"
cp /tmp/cnn_switches/metrics.json "$out/cnn_switches_metrics.json"  # (at most 8 files return)

timeout 300 python3 scripts/benchmark.py --suite gpu 2>&1 | tee "$out/gpu_suite.log"
