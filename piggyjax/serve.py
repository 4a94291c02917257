"""Every task of a bank on one photo, for the demo page: checking an upload, running the tasks,
turning their outputs into pictures, and keeping one request from starving the others."""
from __future__ import annotations

import dataclasses
import io
import threading
import time

import jax
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from piggyjax import cli, export, tasks, train
from piggyjax.bank import Bank, BankError

MAX_PIXELS = 40_000_000   # refused before decoding: ~40 MP covers phone photos, not bombs
WORK_SIDE = 256           # the longest side the tasks run at: bounds each request's compute


class UploadError(ValueError):
  """An upload cannot be used; the message is shown on the page."""


class Busy(RuntimeError):
  """Too many requests are waiting for the model; the page asks to try again."""


class Gate:
  """One inference at a time (the CPU is the bottleneck) and at most ``max_waiting`` queued:
  a request beyond that, or one that waited ``timeout`` seconds, gets ``Busy``, not a hang."""

  def __init__(self, max_waiting: int = 4, timeout: float = 60.0):
    self._lock, self._count = threading.Lock(), threading.Lock()
    self.max_waiting, self.timeout, self.waiting = max_waiting, timeout, 0

  def __enter__(self):
    with self._count:
      if self.waiting >= self.max_waiting:
        raise Busy(f"{self.waiting} requests are already waiting; try again in a moment")
      self.waiting += 1
    try:
      if not self._lock.acquire(timeout=self.timeout):
        raise Busy(f"the model stayed busy for {self.timeout:.0f} s; try again in a moment")
    finally:
      with self._count:
        self.waiting -= 1
    return self

  def __exit__(self, *exc):
    self._lock.release()


def read_upload(data: bytes, max_pixels: int = MAX_PIXELS,
                work_side: int = WORK_SIDE) -> tuple[np.ndarray, list[str]]:
  """(RGB uint8 HW3 at most ``work_side`` on its longest side, notices for the page)."""
  if not data:
    raise UploadError("no file was uploaded: choose a photo or pick a sample")
  notes = []
  try:
    im = Image.open(io.BytesIO(data))  # reads the header only
    if im.width * im.height > max_pixels:
      raise UploadError(f"the image is {im.width}x{im.height} ({im.width * im.height / 1e6:.1f} "
                        f"megapixels), over this page's {max_pixels / 1e6:.0f}-megapixel limit; "
                        "shrink it first")
    if getattr(im, "n_frames", 1) > 1:
      notes.append(f"an animated image of {im.n_frames} frames: the first frame is used")
      im.seek(0)
    if im.format == "JPEG":
      im.draft(im.mode, (work_side, work_side))  # decode at a reduced scale: less work
    im.load()
    im = ImageOps.exif_transpose(im)
  except UploadError:
    raise
  except UnidentifiedImageError:
    raise UploadError("this file is not an image the page can read; upload a JPEG, PNG, GIF, "
                      "WebP or BMP photo") from None
  except (OSError, ValueError, SyntaxError, EOFError,
          Image.DecompressionBombError) as err:
    raise UploadError(f"this image is damaged or truncated ({err}); upload another copy of "
                      "it") from None
  if im.mode == "CMYK":
    notes.append("a CMYK image (print colours): converted to RGB, colours are approximate")
  if im.mode in ("I", "I;16", "F"):  # 16-bit or float gray: scale to 8 bits, not clip
    a = np.asarray(im, np.float64)
    im = Image.fromarray(np.uint8(np.round(255 * (a - a.min()) / max(float(np.ptp(a)), 1e-9))))
  if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
    rgba = im.convert("RGBA")
    im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
  im = im.convert("RGB")
  im.thumbnail((work_side, work_side), Image.BILINEAR)
  return np.asarray(im), notes


@dataclasses.dataclass
class Result:
  task: str
  kind: str
  picture: np.ndarray                                     # HW3 uint8, the photo's size
  legend: list[tuple[str, tuple[int, int, int]]] = dataclasses.field(default_factory=list)
  top5: list[tuple[str, float]] = dataclasses.field(default_factory=list)
  ms: float = 0.0
  compiled: bool = False                                  # the time includes compilation


def config_for(bank: Bank, config):
  """``config`` with the bank's model preset and norm, so a page needs only --base_ckpt."""
  from piggyjax import models
  for name in [config.model.preset, *models.preset_names()]:
    config.model.preset, config.model.norm = name, bank.arch.get("norm", config.model.norm)
    if train.arch(config) == bank.arch:
      return config
  raise BankError(f"the bank at {bank.root} has architecture {bank.arch}, which no model "
                  "preset matches; pass the --config it was trained with")


class Runner:
  """The tasks of one bank, loaded once; ``run`` applies the chosen ones to a photo."""

  def __init__(self, bank_path, config):
    self.bank = Bank.open(bank_path)
    self.config = config_for(self.bank, config)
    self.tasks = self.bank.tasks()
    self.gate = Gate()
    self._fns, self._seen = {}, set()
    for t in self.tasks:
      apply, self.multiple = export.model_fn(self.config, [t])
      task = tasks.get(t)
      fn = jax.jit(lambda v, im, t=t, task=task, apply=apply:
                   apply(v, task.model_input({"image": im}))[t])
      self._fns[t] = (fn, self.bank.load(t))

  def handle(self, data: bytes, chosen: list[str]) -> tuple[np.ndarray, list[str], list[Result]]:
    """An upload checked, decoded and run through the chosen tasks, all under the gate: a
    burst of large uploads decodes one at a time instead of all at once in memory."""
    with self.gate:
      image, notes = read_upload(data)
      return image, notes, self._run(image, chosen)

  def _run(self, image_HW3: np.ndarray, chosen: list[str]) -> list[Result]:
    x = cli._fit(image_HW3, self.multiple)  # the resize --mode=apply does
    out = []
    for t in [t for t in self.tasks if t in chosen]:
      fn, variables = self._fns[t]
      start = time.perf_counter()
      y = np.asarray(jax.block_until_ready(fn(variables, x[None])))[0]
      ms = 1000 * (time.perf_counter() - start)
      key = (t, x.shape)
      names = tuple(self.bank.meta(t).get("class_names") or ())  # a classifier's, as trained
      out.append(dataclasses.replace(picture_of(tasks.get(t), y, x, image_HW3.shape[:2], names),
                                     ms=ms, compiled=key not in self._seen))
      self._seen.add(key)
    return out


def picture_of(task, y, x_HW3: np.ndarray, size_HW, names: tuple = ()) -> Result:
  """A segmentation as a coloured overlay with a legend of the classes it found, a
  classification as its top-5, anything else as the task draws it."""
  names = tuple(names) or tuple(getattr(task, "class_names", ()) or ())
  name = lambda c: names[c] if c < len(names) else f"class {c}"
  result = Result(task.name, task.kind, x_HW3)
  if task.kind == "classification":
    logits = np.asarray(y, np.float64).reshape(-1)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    result.top5 = [(name(int(c)), float(p[c])) for c in np.argsort(-p)[:5]]
  elif task.kind == "segmentation":
    from piggyjax.colormap import voc_colormap
    pred = np.argmax(np.asarray(y), axis=-1)
    colours = voc_colormap(max(256, y.shape[-1]))
    result.picture = (0.4 * x_HW3 + 0.6 * colours[pred]).astype(np.uint8)
    found, counts = np.unique(pred, return_counts=True)
    result.legend = [(name(int(c)), tuple(int(v) for v in colours[c]))
                     for c in found[np.argsort(-counts)][:12]]
  else:
    result.picture = np.asarray(task.to_image(y, x_HW3))
  h, w = size_HW
  result.picture = np.asarray(Image.fromarray(result.picture).resize((w, h), Image.BILINEAR))
  return result
