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
    vp = ts.get("vs_matmul_peak")
    if vp:
      n = vp["matmul_size"]
      lines += [f"Against the machine's peak (a {n}x{n}x{n} float32 matmul timed in the same "
                "rounds; fraction = median over rounds of achieved / peak):", "",
                "| contestant | GFLOP/step (XLA) | achieved GFLOP/s | peak GFLOP/s | fraction | "
                "floor ms |", "|---|---|---|---|---|---|"]
      lines += [f"| {k} | {v['gflop_per_step']:.2f} | {v['achieved_gflops_median']:.1f} | "
                f"{v['matmul_peak_gflops_median']:.1f} | {v['fraction_of_peak_median_paired']:.3f}"
                f" | {v['floor_ms_at_peak']:.1f} |" for k, v in vp.items() if isinstance(v, dict)]
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
  ip = r.get("input_pipeline")
  if ip:
    cores = ip["cores_extrapolated"]
    lines += [f"## Input pipeline ({ip['image_size']} px training batches)", "",
              "Images per CPU-second (per core), and that times "
              f"{cores} cores; CPU ms per image split into decode, resize/crop/flip and the rest.",
              "", f"| source | form | images/s per core | x{cores} cores | wall images/s | decode ms "
              "| resize ms | rest ms | bytes/image | vs raw |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, src in ip["sources"].items():
      if "error" in src:
        lines.append(f"| {name} | - | {src['error'][:80]} | | | | | | | |")
        continue
      for form in [k for k in src if k == "raw" or k.startswith("prepared_")]:
        row, st = src[form], src[form]["stages"]
        size = f"{row['bytes_per_image'] / 1e3:.0f} kB" if "bytes_per_image" in row else "-"
        lines.append(f"| {name} | {form} | {row['images_per_cpu_s']:.0f} | "
                     f"{row['images_per_s_at_cores']:.0f} | {row['images_per_s']:.0f} | "
                     f"{st['decode_ms']:.2f} | {st['resize_crop_flip_ms']:.2f} | {row['rest_ms']:.2f}"
                     f" | {size} | {row.get('speedup_per_core', 1.0):.2f}x |")
    lines.append("")
    procs = [(name, form, src[form]["worker_processes"]) for name, src in ip["sources"].items()
             for form in src if isinstance(src[form], dict) and "worker_processes" in src[form]]
    if procs:
      lines += ["Grain worker processes (one thread each; CPU counts the workers) against the "
                "threads above:", "", "| source | form | workers | images/s per core | wall "
                "images/s | per core vs threads | wall vs threads |",
                "|---|---|---|---|---|---|---|"]
      lines += [f"| {name} | {form} | {w['workers']} | {w['images_per_cpu_s']:.0f} | "
                f"{w['images_per_s']:.0f} | {w['per_core_vs_threads']:.2f}x | "
                f"{w['wall_vs_threads']:.2f}x |" for name, form, w in procs]
      lines.append("")
  lines += _vgg(r.get("vgg_step"))
  lines.append(f"Peak host memory: {r['peak_host_memory_mb']:.0f} MB.")
  return "\n".join(lines) + "\n"


def _vgg(v: dict | None) -> list[str]:
  if not v:
    return []
  peer = v.get("peer")
  lines = [f"## VGG-16 Piggyback step ({v['image_size']} px, batch {v['batch_size']}, "
           f"{v['classes']} classes, {v['masked_weights']:,} masked weights)", "",
           ("PyTorch peer: torch {torch}, {threads} threads; same weights, logits within "
            "{d:.2g} (largest {m:.3g}).".format(**peer, d=v["self_check"]["max_abs_logit_diff"],
                                                 m=v["self_check"]["max_abs_logit"])
            if peer else "No peer (run with --peer)."), "",
           "| contestant | median ms (min) | images/s | GFLOP/step | GFLOP/s | first loss |",
           "|---|---|---|---|---|---|"]
  lines += [f"| {k} | {_ms(row)} | {row['images_per_s']:.2f} | {row['gflop_per_step']:.1f} | "
            f"{row['achieved_gflops']:.1f} | {row['loss_first']:.5f} |"
            for k, row in v["strategies"].items()]
  lines += ["", "| ratio | median of per-round ratios (of medians, of minima) |", "|---|---|"]
  lines += [f"| {k} | {_ratio(x)} |" for k, x in v["ratios"].items()]
  return lines + [""]
