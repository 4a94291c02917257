"""The benchmark's Markdown summary, read from the result dict alone."""
from __future__ import annotations


def _ms(row: dict) -> str:
  return f"{row['median_ms']:.1f} (min {row['min_ms']:.1f})"


def _ratio(r: dict) -> str:
  return (f"{r['median_of_paired']:.3f} (medians {r['of_medians']:.3f}, "
          f"minima {r['of_mins']:.3f})")


def markdown(r: dict) -> str:
  m, mach = r["model"], r["machine"]
  lines = [
      "# piggyjax benchmark", "",
      f"Machine: {mach['cpu']}, {mach['cpu_count']} CPUs, {mach['device']}, jax {mach['jax']}"
      + (f", torch {r['train_step']['peer']['torch']} ({r['train_step']['peer']['threads']} "
         "threads)" if "peer" in r.get("train_step", {}) else "") + ".",
      f"Load average at start / end: {', '.join(f'{x:.1f}' for x in r['load_average_start'])}"
      f" / {', '.join(f'{x:.1f}' for x in r['load_average_end'])}.", "",
      f"U-Net `{m['preset']}` widths {m['widths']}, norm {m['norm']}, {m['dtype']}, "
      f"{m['image_size']}x{m['image_size']}, batch {m['batch_size']}, {m['classes']} classes; "
      f"{r['settings']['steps']} timed rounds after {r['settings']['warmup']} warm-up calls, "
      "contestants interleaved round-robin.", ""]
  ts = r.get("train_step")
  if ts:
    lines += ["## Train step", "", "| contestant | median ms (min) | first call s | compile s |",
              "|---|---|---|---|"]
    for name, row in ts["strategies"].items():
      comp = f"{row['compile_s']:.1f}" if "compile_s" in row else "-"
      lines.append(f"| {name} | {_ms(row)} | {row['first_call_s']:.1f} | {comp} |")
    lines += ["", "| ratio | median of per-round ratios (of medians, of minima) |", "|---|---|"]
    lines += [f"| {k} | {_ratio(v)} |" for k, v in ts["ratios"].items()]
    lines.append("")
  inf = r.get("inference")
  if inf:
    lines += ["## Inference", "", "| masks | median ms per batch (min) | images/s |", "|---|---|---|"]
    for k in ("on_the_fly", "materialised"):
      lines.append(f"| {k} | {_ms(inf[k])} | {inf[k]['images_per_s']:.1f} |")
    lines.append("")
  sw = r.get("task_switch")
  if sw:
    lines += [f"## Task switch: `{sw['preset']}` U-Net ({sw['backbone_params']:,} backbone "
              f"parameters, mask density {sw['mask_density']}, first output at 1x"
              f"{sw['image_size']}x{sw['image_size']})", "",
              "| path | median ms (min) |", "|---|---|",
              f"| bank files → first output | {_ms(sw['from_disk_to_first_output'])} |"]
    for k, v in sw["from_disk_parts"].items():
      lines.append(f"| … of which {k} | {_ms(v)} |")
    lines += [f"| in memory → weights ready | {_ms(sw['in_memory_to_weights_ready'])} |",
              f"| in memory → first output | {_ms(sw['in_memory_to_first_output'])} |",
              f"| open bank + restore base (once) | {1e3 * sw['open_bank_and_base_s']:.0f} |", "",
              "| strategy | bytes per task on disk |", "|---|---|"]
    for k, v in sw["bytes_per_task"].items():
      bpw = f" ({v['bits_per_weight']:.3f} bits/weight)" if "bits_per_weight" in v else ""
      lines.append(f"| {k} | {v['bytes']:,}{bpw} |")
    lines.append(f"| (base, once) | {sw['base_bytes']:,} |")
    lines.append("")
  st = r.get("storage")
  if st:
    lines += ["## Mask storage", "", f"Source: {st['source']}.", ""]
    for t, row in st["tasks"].items():
      if "bits_per_weight" not in row:
        continue
      lines += [f"Task `{t}`: {row['bytes_on_disk']:,} bytes on disk, "
                f"{row['bits_per_weight']:.3f} bits per masked weight (packed bits "
                f"{row['packed_bits_per_weight']:.3f}, entropy bound H(density) "
                f"{row['entropy_bound']:.3f}), density {row['density']:.4f}.", "",
                "| layer | weights | density | codec | bits/weight | H(density) |",
                "|---|---|---|---|---|---|"]
      for ly in row["layers"]:
        lines.append(f"| {ly['path']} | {ly['weights']:,} | {ly['density']:.4f} | {ly['codec']} "
                     f"| {ly['bits_per_weight']:.3f} | {ly['entropy_bound']:.3f} |")
      lines.append("")
  lines.append(f"Peak host memory: {r['peak_host_memory_mb']:.0f} MB.")
  return "\n".join(lines) + "\n"
