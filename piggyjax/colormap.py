"""PASCAL VOC's label palette: the data readers decode masks with it, the tasks draw with it."""
from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=4)
def voc_colormap(n: int = 256) -> np.ndarray:
  """The bit-interleaved VOC palette (n x 3 uint8); index 255 is the void colour."""
  cmap = np.zeros((n, 3), np.uint8)
  for i in range(n):
    c, r, g, b = i, 0, 0, 0
    for j in range(8):
      r |= ((c >> 0) & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    cmap[i] = (r, g, b)
  cmap.flags.writeable = False  # cached and shared: nobody may paint over it
  return cmap
