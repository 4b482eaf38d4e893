# Sourced by run_all.sh and run_tests.sh: use the active environment when torch, diffusers and deffiller import there
# (e.g. the conda env of environment.yml), else create/reuse .venv/ in the repo root and install from pyproject.toml.
ensure_env() {
  local root extras stamp want
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  extras="${1:-notebooks,test}"
  if [ -n "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ] && [ "${VIRTUAL_ENV:-}" != "$root/.venv" ] \
     && python -c "import torch, diffusers, deffiller" >/dev/null 2>&1; then
    echo "using the active environment: $(command -v python)"
    return 0
  fi
  if [ ! -x "$root/.venv/bin/python" ]; then
    echo "creating $root/.venv"
    python3 -m venv "$root/.venv"
  fi
  # shellcheck disable=SC1091
  source "$root/.venv/bin/activate"
  stamp="$root/.venv/.deffiller-installed"
  want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1) $extras"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing deffiller[$extras] into .venv (first run: several minutes, torch is large)"
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet -e "$root[$extras]"
    echo "$want" > "$stamp"
  fi
}
