#!/usr/bin/env bash
# Creates the virtual environment and installs lerobot-wds with its test dependencies.
# torchcodec loads FFmpeg's shared libraries from the system: install Debian's ffmpeg when missing.
set -euo pipefail
venv=${1:-.venv}

if ! ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so'; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: FFmpeg's shared libraries are missing; installing Debian's ffmpeg" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
    else
        echo "setup: torchcodec needs FFmpeg's shared libraries (libavcodec 4-7)." >&2
        echo "       Install them first, e.g. 'sudo apt-get install ffmpeg' or 'conda install ffmpeg'." >&2
        exit 1
    fi
fi

python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then  # torch's CUDA wheels: 6.5 GB installed
    bash "$(dirname "$0")/need_space.sh" "$(dirname "$venv")" 8 "setup: the environment $venv"
    "$python" -m venv "$venv"
fi
log=$(mktemp)
if ! { "$venv/bin/python" -m pip install -q --upgrade pip && "$venv/bin/python" -m pip install -q -c tools/constraints.txt -e '.[test]'; } >"$log" 2>&1; then
    grep -v '^WARNING: Location' "$log" >&2
    echo "setup: pip install failed (log above)" >&2
    exit 1
fi
rm -f "$log"
"$venv/bin/python" -c "import torch, torchcodec, av; print('setup: torch', torch.__version__, '| torchcodec', torchcodec.__version__, '| PyAV', av.__version__)"
