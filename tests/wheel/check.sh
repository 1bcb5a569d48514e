#!/usr/bin/env bash
# The self-contained wheel, end to end (CI runs it; about a minute after scripts/test.sh):
# builds and repairs it (scripts/wheel.sh); checks that no run path in it leaves the wheel and that
# no library in it exports a FAISS symbol; then, in a mount namespace where the system's FAISS,
# OpenBLAS/BLAS/LAPACK, CLI11 and nlohmann-json are hidden (tests/wheel/hide-system.sh), installs it
# into a fresh virtualenv and selects with it: `quarry --version`, `quarry info` (the bundled
# OpenBLAS), a CLI selection and quarry.select with diversity, each against numpy.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/wheel.sh
wheel=$PWD/$(ls dist/quarry_select-*.whl)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir "$work/unpacked"
(cd "$work/unpacked" && python3 -m zipfile -e "$wheel" .)
status=0
while IFS= read -r -d '' file; do
  readelf -h "$file" >/dev/null 2>&1 || continue  # ELF files only
  for path in $(readelf -d "$file" | sed -n 's/.*(R[UN]*PATH).*\[\(.*\)\]/\1/p' | tr ':' ' '); do
    # shellcheck disable=SC2016 # the literal $ORIGIN
    case "$path" in
      '$ORIGIN'*) ;;
      *) echo "wheel check: ${file#"$work"/unpacked/} has the run path $path" >&2; status=1 ;;
    esac
  done
  if nm -D --defined-only "$file" 2>/dev/null | c++filt | grep -q 'faiss::'; then
    echo "wheel check: ${file#"$work"/unpacked/} exports FAISS symbols" >&2
    status=1
  fi
done < <(find "$work/unpacked" -type f -print0)
((status == 0)) || exit 1

numpy=$(grep -E '^numpy==' requirements/test.lock)
version=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
cp examples/pool.npy "$work/pool.npy"
cp tests/wheel/select_check.py "$work/"
# Outside the source tree, so that `import quarry` is the installed wheel's.
bash tests/wheel/hide-system.sh bash -euo pipefail -c '
  cd "$1"
  python3 -m venv venv
  venv/bin/python -m pip install -q --disable-pip-version-check "$2" "$3"
  venv/bin/quarry --version | tee version.txt
  grep -qx "$4" version.txt || { echo "wheel check: quarry --version is not $4" >&2; exit 1; }
  venv/bin/quarry info | tee info.txt
  grep -q "BLAS OpenBLAS" info.txt || { echo "wheel check: k-means would not run on OpenBLAS" >&2; exit 1; }
  venv/bin/python select_check.py venv/bin/quarry
' check "$work" "$wheel" "$numpy" "$version"
echo "wheel check: passed ($(basename "$wheel"))"

# The CUDA plugin that scripts/test.sh built into .venv (when nvcc was there) must find cudart and
# cuBLAS in the nvidia-* wheels PyTorch brought, with the system's CUDA libraries hidden.
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['platlib'])")
if [ -e "$site/quarry/libquarry_cuda.so" ] && [ -d "$site/nvidia" ]; then
  bash tests/wheel/cuda-from-wheels.sh "$site"
  echo "wheel check: the pip-installed CUDA plugin finds cudart and cuBLAS in the nvidia-* wheels"
fi
