#!/usr/bin/env bash
# Deploy every cvat-autotrack Nuclio function for CPU (serverless/*/nuclio/function.yaml) to a
# local Nuclio, as CVAT's serverless/deploy_cpu.sh does. Options: --dry-run, --function NAME,
# --env KEY=VALUE, ...; see --help. The logic is in autotrack.cvat.deploy.nuclio (tested).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi
export PYTHONPATH="$repo/shared${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m autotrack.cvat.deploy.nuclio --cpu --repo "$repo" "$@"
