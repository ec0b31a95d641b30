"""reader/torchcodec_import.py: torchcodec without ``torch._dynamo``, and the stand-in's limits.

Each case runs in a fresh interpreter: whether ``torch._dynamo`` is imported is process state.
(The DataLoader side, spawned and forked workers and the 0-worker process decoding without it, is
in tests/test_dataset.py.)"""

import json
import subprocess
import sys
import textwrap


def run(code: str) -> dict:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_torchcodec_imports_without_dynamo_and_dynamo_imports_whole_after():
    got = run("""
        import json, sys, torch
        from lerobot_wds.reader.torchcodec_import import video_decoder_class
        cls = video_decoder_class()
        out = {"class": f"{cls.__module__}.{cls.__name__}", "dynamo": "torch._dynamo" in sys.modules}
        import torch._dynamo
        out["after"] = [type(torch._dynamo).__name__, torch._dynamo.disallow_in_graph.__module__]
        print(json.dumps(out))
    """)
    assert got == {"class": "torchcodec.decoders._video_decoder.VideoDecoder", "dynamo": False,
                   "after": ["module", "torch._dynamo.decorators"]}


def test_anything_more_than_disallow_in_graph_gets_the_real_dynamo():
    """What a torchcodec needing more of ``torch._dynamo`` than ``disallow_in_graph`` would do
    while the stand-in is in place: a public name or a submodule import the real module."""
    setup = """
        import json, sys, torch
        from lerobot_wds.reader.torchcodec_import import _DYNAMO, _DynamoStandIn
        sys.modules[_DYNAMO] = _DynamoStandIn(_DYNAMO)
    """
    got = run(setup + """
        import torch._dynamo.config as config
        print(json.dumps([config.__name__, type(sys.modules[_DYNAMO]).__name__]))
    """)
    assert got == ["torch._dynamo.config", "module"]
    got = run(setup + """
        reset = sys.modules[_DYNAMO].reset
        print(json.dumps([reset.__module__, type(sys.modules[_DYNAMO]).__name__]))
    """)
    assert got == ["torch._dynamo", "module"]
