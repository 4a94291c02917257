"""Performance measurement, kept apart from the library it measures.

- ``suite``: the whole benchmark (``experiments/benchmark.py``) as one JSON-ready dict.
- ``steps``: train step per strategy and inference; ``flops``: achieved FLOP/s against a
  matmul peak measured in the same run.
- ``inputs``: the input pipeline's training images/s per core and where its time goes.
- ``bank``: task switch and mask storage; ``report``: the Markdown summary.
- ``peer``: the PyTorch Piggyback peer (``peer`` extra); ``hostmem``: malloc tuning that must
  run before JAX starts, which is why this file imports nothing.
"""
