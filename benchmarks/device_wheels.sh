#!/usr/bin/env bash
# Wheels of the Python packages that benchmarks/device_check.sh needs beyond a CUDA machine's usual image, for a
# GPU machine without a package index: run this where pip reaches PyPI, carry the folder along, and
# device_check.sh installs it from there (`pip install --no-index --no-deps --target`, nothing fetched).
#
#   bash benchmarks/device_wheels.sh            # into .whl/ (git-ignored); DIR=... PYTHON_VERSION=3.12 to change
#
# What an image with torch, triton, timm, numpy, scipy, scikit-learn, pandas, matplotlib, jinja2, pillow,
# safetensors, pyyaml, filelock, tqdm, requests, psutil and pytest lacks for the check: pydantic (params) and
# dvclive (training logs). dvclive imports dvc at the top of its modules, and what those dvc modules import is
# listed below: found by running `pdd train`, `pdd evaluate` and the `gpu` tests with such an image's
# site-packages and nothing else. `--no-deps`, since the rest of dvc's dependency tree (hydra, celery, ...)
# is not needed to log metrics, and part of it comes only as source archives. The versions are the ones
# installed where this runs (the test suite's), so the GPU runs what the tests ran with.
set -euo pipefail

DIR="${DIR:-.whl}"
PYTHON="${PYTHON:-python}"
PYTHON_VERSION="${PYTHON_VERSION:-3.12}"  # the GPU image's python3
PACKAGES=(
    pydantic pydantic-core annotated-types typing-inspection
    dvclive dvc dvc-data dvc-objects dvc-http dvc-render dvc-studio-client scmrepo dulwich sqltrie pygtrie
    diskcache dpath funcy flatten-dict voluptuous ruamel.yaml flufl.lock atpublic zc.lockfile platformdirs configobj
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

mkdir -p "$DIR"
rm -f "$DIR"/*.whl
pins=$("$PYTHON" - "${PACKAGES[@]}" <<'EOF'
import importlib.metadata, sys
missing = []
for name in sys.argv[1:]:
    try:
        print(f"{name}=={importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        missing.append(name)
if missing:
    sys.exit(f"not installed here: {', '.join(missing)}; run this from pdd's environment (make venv)")
EOF
)
# shellcheck disable=SC2086  # one pin per word
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" \
    --implementation cp ${PLATFORMS[@]/#/--platform } --dest "$DIR" $pins
echo "$(ls "$DIR"/*.whl | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR for Python $PYTHON_VERSION:"
ls "$DIR"
