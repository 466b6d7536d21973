#!/usr/bin/env bash
# Create (or reuse) the per-image test virtualenvs, made from the same lock file each image's
# Dockerfile installs. They live outside the repo, keyed by the hash of the lock file:
#   ${INTERNLM_VENV_CACHE:-${INTERNLM_CACHE:-~/.cache/internlm-operator}/venvs}/<image>-<hash>
# uv's wheel cache is shared, so torch is downloaded once for every environment.
# Usage: images/workloads/envs.sh <image>...   (prints "<image> <venv path>" per image)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${INTERNLM_VENV_CACHE:-${INTERNLM_CACHE:-$HOME/.cache/internlm-operator}/venvs}"
python="${INTERNLM_VENV_PYTHON:-python3.11}"
command -v uv >/dev/null || python3 -m pip install -q uv==0.13.9
mkdir -p "$cache"
[ $# -gt 0 ] || set -- pretrain finetune eval agent serve
for image in "$@"; do
  lock="$here/$image/requirements.lock"
  [ -f "$lock" ] || { echo "no lock file: $lock" >&2; exit 2; }
  hash="$(cat "$lock" "$here/workloads/envs.sh" | sha256sum | cut -c1-12)"
  venv="$cache/$image-$hash"
  (
    flock 9
    if [ ! -f "$venv/.complete" ]; then
      start=$SECONDS
      rm -rf "$venv"
      uv venv -q --python "$python" "$venv"
      # --index-strategy: the lock file is the single source of truth, resolved from PyPI.
      uv pip install -q --python "$venv/bin/python" --no-deps -r "$lock"
      touch "$venv/.complete"
      echo "created $venv in $((SECONDS - start))s" >&2
    fi
  ) 9>"$cache/.$image.lock"
  echo "$image $venv"
done
