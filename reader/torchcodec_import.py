"""Importing torchcodec without importing ``torch._dynamo``.

torchcodec's op module marks a few of its ops with ``torch._dynamo.disallow_in_graph`` (so that
``torch.compile`` breaks the graph there), and that one attribute access imports ``torch._dynamo``:
2.3 s and ~110 MB resident, 65-75 MB of it private, in every process that decodes
(``tools/bench_frame_costs.py``), for a compiler a DataLoader worker never runs. That is most of
what importing torchcodec costs.

When ``torch._dynamo`` is not imported yet, :func:`video_decoder_class` imports torchcodec with a
stand-in for it whose ``disallow_in_graph`` hands the op back unmarked; any other public name asked
of the stand-in, or a submodule imported, imports the real module and answers from it (so a
torchcodec that needs more of ``torch._dynamo`` still imports, with it). The stand-in is gone when
the import returns, so a later ``import torch._dynamo`` (a ``torch.compile`` in the same process)
gets the real module. What that process loses: ``torch.compile`` does not break the graph at torchcodec's
ops by itself, which matters only to code that compiles a function calling torchcodec. A
process that imported ``torch._dynamo`` before (lerobot's training script imports it) imports
torchcodec as usual.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types

_LOCK = threading.Lock()
_DYNAMO = "torch._dynamo"


class _DynamoStandIn(types.ModuleType):
    """``torch._dynamo`` while torchcodec imports: ``disallow_in_graph`` is the identity."""

    @staticmethod
    def disallow_in_graph(fn):
        return fn

    def __getattr__(self, name: str):
        # Dunder names are what inspect and others probe on every module (``__file__``): not an
        # answer to fetch the real module for, but ``__path__``, for importing a submodule, is.
        if name.startswith("__") and name != "__path__":
            raise AttributeError(name)
        return getattr(_real_dynamo(), name)


def _real_dynamo() -> types.ModuleType:
    if isinstance(sys.modules.get(_DYNAMO), _DynamoStandIn):
        del sys.modules[_DYNAMO]
    return importlib.import_module(_DYNAMO)


def video_decoder_class() -> type:
    """torchcodec's ``VideoDecoder``, imported without ``torch._dynamo`` where that is not imported yet."""
    if "torchcodec.decoders" not in sys.modules and _DYNAMO not in sys.modules:
        with _LOCK:
            if "torchcodec.decoders" not in sys.modules and _DYNAMO not in sys.modules:
                sys.modules[_DYNAMO] = _DynamoStandIn(_DYNAMO)
                try:
                    import torchcodec.decoders  # noqa: F401
                finally:
                    if isinstance(sys.modules.get(_DYNAMO), _DynamoStandIn):
                        del sys.modules[_DYNAMO]
    from torchcodec.decoders import VideoDecoder

    return VideoDecoder
