#!/usr/bin/env bash
# tools/need_space.sh DIR GB WHAT: exits 1, saying what to do, when DIR's file system has under GB
# gigabytes free. The setup scripts call it before building a virtual environment: torch's PyPI
# wheels for Linux are CUDA builds, and a half-installed environment fails later and less clearly.
set -euo pipefail
dir=$1 need_gb=$2 what=$3
free_kb=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
free_gb=$((free_kb / 1024 / 1024))
if [ "$free_gb" -lt "$need_gb" ]; then
    echo "$what needs about $need_gb GB of free disk; $(cd "$dir" && pwd) has $free_gb GB." >&2
    echo "       Free some space there, or give the environment a path on a larger disk (make VENV=... LEROBOT_VENV=...), and run it again." >&2
    exit 1
fi
