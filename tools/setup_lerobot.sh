#!/usr/bin/env bash
# Builds the lerobot 0.6.1 environment for tests_lerobot/ (live parity with lerobot, lerobot-wds train):
# Python 3.12, lerobot[dataset,training,diffusion]==0.6.1 (torch 2.11, torchcodec 0.11), pytest, then
# lerobot-wds installed as a user would (pip install -e ., no constraints). Checks that this install
# changed no package lerobot had installed and that `pip check` is clean.
# Exit status 3 (and a message) when no Python 3.12 is found: `make test` then skips that suite.
set -euo pipefail
venv=${1:-.venv-lerobot}

is_312() { [ -n "$1" ] && "$1" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; }
find_python312() {  # the first candidate that runs as Python 3.12 (a pyenv shim may exist and fail)
    local c
    for c in "${PYTHON312:-}" "$(command -v python3.12 || true)" \
             $(command -v pyenv >/dev/null && ls -d "$(pyenv root)"/versions/3.12.*/bin/python3.12 2>/dev/null | sort -rV); do
        if is_312 "$c"; then echo "$c"; return; fi
    done
}
python=$(find_python312)
if [ -z "$python" ]; then
    echo "setup_lerobot: no Python 3.12 (python3.12 on PATH, \$PYTHON312, or pyenv's versions/3.12.*);" >&2
    echo "               lerobot 0.6.1's environment cannot be built here" >&2
    exit 3
fi

pip() { "$venv/bin/python" -m pip "$@"; }
run() {  # quiet pip, its log shown on failure
    local log; log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then cat "$log" >&2; echo "setup_lerobot: failed: $*" >&2; rm -f "$log"; exit 1; fi
    rm -f "$log"
}
if [ ! -x "$venv/bin/python" ]; then  # torch 2.11's CUDA wheels: 3 GB downloaded, 5.6 GB installed
    bash "$(dirname "$0")/need_space.sh" "$(dirname "$venv")" 9 "setup_lerobot: the environment $venv"
    "$python" -m venv "$venv"
fi
run pip install -q --upgrade pip
run pip install -q -c tools/constraints-lerobot.txt "lerobot[dataset,training,diffusion]==0.6.1" "pytest>=8"

freeze() { pip list --format=freeze --exclude-editable 2>/dev/null | grep -iv '^lerobot-wds==' | sort; }
before=$(freeze)
run pip install -q -e .
after=$(freeze)
changed=$(comm -23 <(echo "$before") <(echo "$after"))
if [ -n "$changed" ]; then
    echo "setup_lerobot: installing lerobot-wds changed packages of the lerobot environment:" >&2
    echo "$changed" | sed 's/^/    was /' >&2
    comm -13 <(echo "$before") <(echo "$after") | sed 's/^/    now /' >&2
    exit 1
fi
added=$(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')
pip check
"$venv/bin/python" -c "import lerobot, torch, torchcodec, lerobot_wds.reader; print('setup_lerobot: lerobot', lerobot.__version__, '| torch', torch.__version__, '| torchcodec', torchcodec.__version__)"
echo "setup_lerobot: installing lerobot-wds changed no installed package; added: ${added:-nothing}; pip check clean"
