"""Ratios and the Markdown table of ``bench/darts_step.py``'s results."""

from __future__ import annotations

from typing import Any


def ratios(out: dict[str, Any], prefix: str, mode: str, res: dict[str, float]) -> dict:
    """Ours against the naive reference (first order against first order, second order
    against its finite-difference second order) and against our unfused path if measured."""
    ratios = {}
    base = f"{prefix}reference.{mode.split('.')[0]}"  # prefix: "<config>.<layout>."
    if f"{base}.step_s" in out:
        ref_s, ref_mb = out[f"{base}.step_s"], out[f"{base}.saved_mb"]
        ratios["speedup_vs_reference"] = ref_s / res["step_s"]
        ratios["time_ratio_vs_reference"] = res["step_s"] / ref_s
        ratios["saved_ratio_vs_reference"] = res["saved_mb"] / ref_mb
    if "peak_mb" in res and f"{base}.peak_mb" in out:  # CUDA: max_memory_allocated
        ratios["peak_ratio_vs_reference"] = res["peak_mb"] / out[f"{base}.peak_mb"]
    if "aten_ops" in res and f"{base}.aten_ops" in out:
        ratios["aten_ops_ratio_vs_reference"] = res["aten_ops"] / out[f"{base}.aten_ops"]
    for key in ("step_s", "step_cpu_s"):
        if f"{prefix}unfused.{mode}.{key}" in out:
            tag = "time" if key == "step_s" else "cpu_time"
            ratios[f"{tag}_ratio_vs_unfused"] = res[key] / out[f"{prefix}unfused.{mode}.{key}"]
    return ratios


def markdown(out: dict[str, Any]) -> str:
    """The results as a Markdown table (for the README)."""
    cols = ("step_s", "saved_mb", "aten_ops")
    rows = [
        "| config | step | s/step | saved MB (peak) | aten calls | time / ref | saved / ref "
        "| calls / ref |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in (k for k in out if k.endswith(".step_s")):
        name, prefix = key.split(".", 1)[0], key.split(".", 1)[1][: -len(".step_s")]
        cells = [out.get(f"{name}.{prefix}.{k}", "") for k in cols]
        cells += [
            out.get(f"{name}.{prefix}.{k}_ratio_vs_reference", "")
            for k in ("time", "saved", "aten_ops")
        ]
        rows.append(f"| {name} | {prefix} | " + " | ".join(map(str, cells)) + " |")
    cos = (f"{m}: cos {out[f'hypergrad.{m}.cos']:.4f}" for m in ("exact", "finite_difference"))
    return "\n".join(rows) + "\n\nhypergradient vs full unroll (float64): " + ", ".join(cos)
