"""piggyjax.serve without a browser: uploads checked before decoding, one request cannot hold
the model forever or queue without bound, a classification shown as its top-5."""
import dataclasses
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from piggyjax import serve


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
  buf = io.BytesIO()
  im.save(buf, format=fmt, **kw)
  return buf.getvalue()


def test_uploads_are_checked_and_made_rgb():
  with pytest.raises(serve.UploadError, match="no file was uploaded"):
    serve.read_upload(b"")
  with pytest.raises(serve.UploadError, match="not an image the page can read"):
    serve.read_upload(b"%PDF-1.4 not a photo")
  png = encode(Image.new("RGB", (40, 30), (10, 20, 30)), "PNG")
  with pytest.raises(serve.UploadError, match="damaged or truncated"):
    serve.read_upload(png[: len(png) // 2])
  with pytest.raises(serve.UploadError, match="40x30 .0.0 megapixels., over"):
    serve.read_upload(png, max_pixels=1000)
  # Transparent pixels become white, not black; 16-bit gray is scaled, not clipped at 255.
  rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
  image, notes = serve.read_upload(encode(rgba, "PNG"))
  assert image.shape == (8, 8, 3) and (image == 255).all() and notes == []
  gray16 = Image.fromarray(np.array([[0, 1000], [2000, 4000]], np.uint16))
  image, _ = serve.read_upload(encode(gray16, "PNG"))
  assert image[..., 0].tolist() == [[0, 64], [128, 255]]
  big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 900, 3), np.uint8))
  image, _ = serve.read_upload(encode(big, "JPEG"), work_side=128)
  assert max(image.shape[:2]) == 128 and image.dtype == np.uint8


def test_gate_bounds_the_queue_and_the_wait():
  gate = serve.Gate(max_waiting=1, timeout=0.5)
  held, release = threading.Event(), threading.Event()

  def hold():
    with gate:
      held.set()
      release.wait(5)
  worker = threading.Thread(target=hold)
  worker.start()
  held.wait(5)
  start = time.monotonic()
  with pytest.raises(serve.Busy, match="stayed busy for 0 s"):
    with gate:
      pass
  assert 0.4 < time.monotonic() - start < 3  # waited its turn, then gave up
  gate.waiting = 1  # as if one request were queued already: the next is refused at once
  with pytest.raises(serve.Busy, match="1 requests are already waiting"):
    with gate:
      pass
  gate.waiting = 0
  release.set()
  worker.join(5)
  with gate:  # free again
    pass


@dataclasses.dataclass(frozen=True)
class Classifier:  # what a classification task offers the page: kind, names, outputs (1, 1, K)
  name: str = "birds"
  kind: str = "classification"
  class_names: tuple = ("wren", "robin", "finch", "crow", "owl", "jay", "tit")


def test_classification_is_shown_as_its_top5():
  logits = np.log(np.array([1, 5, 2, 8, 3, 1, 4], np.float32))[None, None, :]
  r = serve.picture_of(Classifier(), logits, np.zeros((16, 16, 3), np.uint8), (20, 30))
  assert [n for n, _ in r.top5] == ["crow", "robin", "tit", "owl", "finch"]
  assert np.isclose(r.top5[0][1], 8 / 24) and r.picture.shape == (20, 30, 3)
