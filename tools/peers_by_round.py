"""Ours' rows of a ``tools/bench_peers.py`` run against the decode limit of their own round (and
against the limit measured right after them, where the run did).

Reads the run's ``bench_peers.json`` (``--data``'s folder, ``bench_out/peers`` by default) or the
lines the run printed, and prints what the run itself prints after its table (``by_round``).

    .venv-lerobot/bin/python tools/peers_by_round.py bench_out/peers/bench_peers.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_peers import by_round  # noqa: E402


def load(path: Path) -> tuple[list[dict], list[dict]]:
    """(rows, each round's decode limit) of a run: its JSON file, or its printed lines."""
    text = path.read_text()
    try:
        saved = json.loads(text)
    except json.JSONDecodeError:
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        return ([x for x in lines if "reader" in x],
                [x["decode_limit"] for x in sorted((x for x in lines if "decode_limit" in x), key=lambda x: x["round"])])
    return saved["rows"], saved["decode_limits"]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(by_round(*load(Path(sys.argv[1]))))
