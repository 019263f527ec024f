"""The summary tables: one row per figure, a verdict per target.

Verdicts are printed, never enforced: a missed target is a finding to report,
not a reason for the benchmark to fail.
"""

from dataclasses import dataclass

# Absolute limits (the ratio targets live with the variants, bench/local.py).
DRY_RUN_MAX_S = 2.5
RERUN_MAX_S = 2.5
LARGE_DRY_RUN_MAX_S = 10.0
LARGE_DRY_RUN_MAX_MB = 500.0
LINEARITY_MAX_RATIO = 1.2  # seconds per image at 270k / at 27k
# Issue 23: "a million images planned in at most 6 s here (from scratch and again), at most 400 MB".
HUGE_DRY_RUN_MAX_S = 6.0
HUGE_DRY_RUN_MAX_MB = 400.0


@dataclass
class Row:
    """One line of the final table; ok is None for reference figures."""

    measurement: str
    value: str
    target: str
    ratio: str
    ok: bool = None


def limit_row(measurement, value, measured, limit, unit):
    """A row for an absolute limit: the ratio says how much of the limit is used."""
    return Row(measurement, value, f"<= {limit:g} {unit}", f"{measured / limit:.2f}x limit",
               measured <= limit)  # fmt: skip


def timing(series):
    return f"{series.median:.2f} s (best {series.best:.2f} s, {series.peak_mb:.0f} MB)"


def full_run_rows(full):
    """Workflow variants against the reference (the baseline Pool, or xargs)
    on one tree, then what they wrote."""
    where = f"full run, {full.tree.label}"
    ref = full.reference
    rows = []
    for wf in full.workflows:
        ratio, limit = full.ratio(wf), full.max_ratio(wf)
        rows.append(Row(f"{where}, {wf.variant.label}: workflow (median of {len(wf.series.runs)})",
                        timing(wf.series), f"<= {limit}x {ref.short}", f"{ratio:.2f}x {ref.short}",
                        ratio <= limit))  # fmt: skip
    rows.append(Row(f"{where}: {ref.name} (median of {len(full.baseline.runs)})",
                    timing(full.baseline), "reference", "", None))  # fmt: skip
    for wf in full.workflows:
        rows.append(Row(f"{where}, {wf.variant.label}: outputs equal to {ref.owner}",
                        "yes" if wf.identical else "NO", "identical", "", wf.identical))  # fmt: skip
    for wf in full.workflows[:1]:  # the shards are the same in every variant
        rows.append(Row(f"{where}: shard jobs, peak memory of each", wf.shards.short(),
                        "reference", "", None))  # fmt: skip
    return rows


def linearity_rows(large, small):
    """Seconds per image at the large size against the small one, for both
    (the first variant: the default target, or --targets)."""
    rows = []
    for which in ("workflow", "baseline"):
        big = large.workflows[0].series if which == "workflow" else large.baseline
        ref = small.workflows[0].series if which == "workflow" else small.baseline
        linear = big.s_per_1000 / ref.s_per_1000
        checked = which == "workflow"  # the baseline is the reference
        rows.append(Row(
            f"full run, {big.images:,} images: {which} (median of {len(big.runs)})",
            f"{big.median:.1f} s = {big.s_per_1000:.3f} s/1k images "
            f"({ref.s_per_1000:.3f} at {ref.images:,})",
            f"<= {LINEARITY_MAX_RATIO}x s/image at {ref.images:,}" if checked else "reference",
            f"{linear:.2f}x per image",
            linear <= LINEARITY_MAX_RATIO if checked else None,
        ))  # fmt: skip
    return rows


def dry_run_rows(dry, max_s, max_mb=None):
    n = f"{dry.images:,}"
    rows = [limit_row(f"dry run -n from scratch, {n} images (best of {len(dry.runs)})",
                      f"{dry.best:.2f} s ({dry.peak_mb:.0f} MB)", dry.best, max_s, "s")]  # fmt: skip
    if max_mb:
        rows.append(limit_row(f"dry run -n peak memory, {n} images", f"{dry.peak_mb:.0f} MB",
                              dry.peak_mb, max_mb, "MB"))  # fmt: skip
    return rows


def build_rows(small, dry, rerun, heavy=None, large=None, large_dry=None, huge_dry=None,
               bands=None, command=None):  # fmt: skip
    rows = full_run_rows(small)
    rows += dry_run_rows(dry, DRY_RUN_MAX_S)
    rows.append(limit_row(
        f"nothing-to-do rerun, {rerun.images:,} images (best of {len(rerun.runs)})",
        f"{rerun.best:.2f} s ({rerun.peak_mb:.0f} MB)", rerun.best, RERUN_MAX_S, "s"))  # fmt: skip
    for other in (bands, command):  # against their own references
        if other:
            rows += full_run_rows(other)
    if heavy:
        rows += full_run_rows(heavy)
    if large_dry:
        rows += dry_run_rows(large_dry, LARGE_DRY_RUN_MAX_S, LARGE_DRY_RUN_MAX_MB)
    if large:
        rows += full_run_rows(large)
        rows += linearity_rows(large, small)
    if huge_dry:
        rows += dry_run_rows(huge_dry, HUGE_DRY_RUN_MAX_S, HUGE_DRY_RUN_MAX_MB)
        again = getattr(huge_dry, "again", None)
        if again:
            rows.append(limit_row(f"dry run -n again (plan lists written), {again.images:,} images",
                                  f"{again.best:.2f} s ({again.peak_mb:.0f} MB)", again.best,
                                  HUGE_DRY_RUN_MAX_S, "s"))  # fmt: skip
    return rows


def markdown(cells):
    """A Markdown table of ``cells`` (the first row is the header), columns padded."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def markdown_table(rows, invalid):
    def verdict(ok):
        text = "reference" if ok is None else ("within target" if ok else "**NOT within target**")
        return text + (" (timings invalid: Slurm stall)" if invalid and ok is not None else "")

    cells = [("measurement", "value", "target", "ratio", "verdict")]
    cells += [(r.measurement, r.value, r.target, r.ratio, verdict(r.ok)) for r in rows]
    return markdown(cells)
