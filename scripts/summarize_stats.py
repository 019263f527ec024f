"""Write the per-class summary and the error list (the summarize_stats rule)."""

import sys

from imagestats.summary import OVERALL, write_summary

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (injected by Snakemake)

out = snakemake.output  # noqa: F821
summary, errors = write_summary(
    snakemake.input.csv,  # noqa: F821
    out.summary, out.errors, out.summary_html, out.errors_html,
)  # fmt: skip
if (summary["class"] == OVERALL).sum() > 1:
    print(
        f"warning: a class folder is named {OVERALL!r} like the overall row; "
        "summary.csv's last row is the overall one",
        file=sys.stderr,
    )
overall = summary.iloc[-1]
print(
    f"{len(summary) - 1} classes, {overall['images']} images, "
    f"{overall['errors']} with errors -> {out.summary}, {out.errors}",
    file=sys.stderr,
)
