#!/usr/bin/env bash
# The one prepared GPU check of pdd (benchmarks/README.md, "Device check"): run from the repository root on a
# machine with one CUDA GPU, torch, triton and timm installed, no network, nothing else to install.
#
#   bash benchmarks/device_check.sh            # writes under ${OUT:-results/device_check}
#
# Parts, each under its own timeout so that the whole fits in 8 minutes:
#   1. the environment (torch / CUDA / triton versions, the GPU);
#   2. `pytest -m gpu`: scan backends agree on CUDA, a `full` step and `pdd evaluate` on CUDA match the CPU,
#      bf16 autocast, a 1-GPU torchrun run;
#   3. `python -m benchmarks --device cuda --quick`: one table of GPU throughput, memory and ratios.
# The teachers are random-init (`teachers.pretrained: false` in the tests and benchmarks): no download.
set -euo pipefail

OUT="${OUT:-results/device_check}"
PYTHON="${PYTHON:-python}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

part() {  # part NAME SECONDS COMMAND...: run COMMAND under a timeout, log it, keep going when it fails
    local name=$1 seconds=$2
    shift 2
    echo "=== $name (timeout ${seconds}s): $*"
    local started=$SECONDS code=0
    timeout --kill-after=10 "$seconds" "$@" > >(tee "$OUT/$name.log") 2>&1 || code=$?
    echo "=== $name: exit $code after $((SECONDS - started)) s"
    echo "$name $code $((SECONDS - started))" >> "$OUT/parts.txt"
    if [ "$code" -ne 0 ]; then status=1; fi
}

: > "$OUT/parts.txt"
part environment 60 "$PYTHON" -c '
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton: not installed")
try:
    import mamba_ssm
    print("mamba-ssm", mamba_ssm.__version__)
except ImportError:
    print("mamba-ssm: not installed (the triton scan is the GPU path)")
if not torch.cuda.is_available():
    raise SystemExit("no CUDA device visible to torch")
print("GPU", torch.cuda.get_device_name(), "| capability", torch.cuda.get_device_capability(),
      "| memory %.0f GiB" % (torch.cuda.get_device_properties(0).total_memory / 2**30))
from pdd.ops import available_backends
print("scan backends", available_backends())
'
part pytest_gpu 240 "$PYTHON" -m pytest -m gpu -p no:cacheprovider -q -rs --durations=10 \
    --junitxml="$OUT/pytest_gpu.xml" tests
part benchmarks 240 "$PYTHON" -m benchmarks --device cuda --quick --repeats 3 --out "$OUT/benchmarks"

echo "=== parts (name, exit code, seconds):"
cat "$OUT/parts.txt"
exit "$status"
