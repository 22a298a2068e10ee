#!/usr/bin/env bash
# The one prepared GPU check of pdd (benchmarks/README.md, "Device check"): run from the repository root on a
# machine with one CUDA GPU, torch, triton and timm installed, and no network.
#
#   bash benchmarks/device_wheels.sh           # first, where pip reaches PyPI: wheels of what the GPU image lacks
#   bash benchmarks/device_check.sh            # there, with .whl/ carried along; writes under ${OUT:-results/device_check}
#
# The wheels in ${WHEELS:-.whl} (pydantic, dvclive and the dvc modules dvclive imports) are installed into a
# folder of their own with `pip install --no-index --no-deps --target` (nothing is fetched) and put on PYTHONPATH.
# Parts, each under its own timeout, so that the whole stops within ~11 minutes (60 + 60 + 300 + 240 s): a plan,
# not a measurement, since no GPU has run this script yet:
#   1. the wheels, installed (skipped when there are none: then the image must have them);
#   2. the environment (torch / CUDA / triton versions, the GPU, the scan backends);
#   3. `pytest -m gpu` on the test files marked gpu: scan backends agree on CUDA, a `full` step and
#      `pdd evaluate` on CUDA match the CPU, bf16 autocast, a 1-GPU torchrun run;
#   4. `python -m benchmarks --device cuda --quick`: one table of GPU throughput, memory and ratios.
# The teachers are random-init (`teachers.pretrained: false` in the tests and benchmarks): no download.
set -euo pipefail

OUT="${OUT:-results/device_check}"
PYTHON="${PYTHON:-python}"
WHEELS="${WHEELS:-.whl}"
SITE="${SITE:-${TMPDIR:-/tmp}/pdd-device-check-site}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
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
if compgen -G "$WHEELS/*.whl" > /dev/null; then
    part wheels 60 "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl
else
    echo "=== wheels: none in $WHEELS (bash benchmarks/device_wheels.sh makes them); using the image's packages"
fi
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
import importlib, importlib.metadata
for name in ("pydantic", "dvclive"):
    print(name, importlib.metadata.version(name), "from", importlib.import_module(name).__file__)
if not torch.cuda.is_available():
    raise SystemExit("no CUDA device visible to torch")
print("GPU", torch.cuda.get_device_name(), "| capability", torch.cuda.get_device_capability(),
      "| memory %.0f GiB" % (torch.cuda.get_device_properties(0).total_memory / 2**30))
from pdd.ops import available_backends
print("scan backends on cuda", available_backends("cuda"), "| on cpu", available_backends("cpu"))
'
# only the files with gpu tests: collecting every test module would import what only the CPU suite needs
# (pydicom, nibabel, snakemake, ...)
mapfile -t gpu_tests < <(grep -rl --include='test_*.py' 'pytest.mark.gpu' tests | sort)
part pytest_gpu 300 "$PYTHON" -m pytest -m gpu -p no:cacheprovider -q -rs --durations=10 \
    --junitxml="$OUT/pytest_gpu.xml" "${gpu_tests[@]}"
part benchmarks 240 "$PYTHON" -m benchmarks --device cuda --quick --repeats 3 --out "$OUT/benchmarks"

echo "=== parts (name, exit code, seconds):"
cat "$OUT/parts.txt"
exit "$status"
