#!/bin/sh
# The engine's CUDA checks in one run, for a session lent a GPU machine (the device tool):
#   - spatial_entropy against the reference vectors on CUDA, and saliency against Captum;
#   - benchmarks/engine.py with ResNet-50, batch 64, on the GPU (images per second, against Captum's loop).
# The machine has PyTorch, torchvision, scipy and pytest but not Captum. Before the run, here, in the
# repository's root (the wheel is pure Python; .whl/ stays out of git):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl captum==0.9.0
# then run `sh benchmarks/gpu_check.sh` with carry [".whl"] and copy what it prints into
# benchmarks/RESULTS.md. The reference vectors travel with the tests (tests/data).
set -e
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
# The package as an install lays it out (pyproject's package-dir), without building anything there.
mkdir -p /tmp/pkg/semiotui
cp semiotui/*.py /tmp/pkg/semiotui/
for part in engine tui themes; do ln -sfn "$PWD/$part" "/tmp/pkg/semiotui/$part"; done
export PYTHONPATH="/tmp/pkg${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
python3 -m pytest -q -p no:cacheprovider tests/test_entropy.py tests/test_saliency.py
python3 benchmarks/engine.py --model resnet50 --batch 64 --device cuda
