"""The leave-one-source-out table (issue 12 part 3) from `sparsemap-host eval --per-source`
summaries: for every held-out group, the int8 margin over the best classical method (and over
zero-filled) on its sources, for the model trained without it next to the model of the same
preset trained on every source (seen). Writes results/loso/loso.md.

    python models/tools/loso_table.py [--preset multisource]
"""

from __future__ import annotations

import argparse
import csv
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
#: held-out group -> its sources (host/src/sources.rs SOURCE_GROUPS; scripts/loso.sh)
GROUPS = {"colin27": ["colin27"], "mni152": ["mni152_t1", "synthetic_t2"], "inia19": ["inia19_t1"]}
ACQUISITIONS = ["block128@0.075", "block128@0.15", "block128@0.3"]


def read(path: pathlib.Path, method: str = "learned-int8") -> dict:
    """``{(acquisition, source): (margin over best classical, margin over zero-filled)}``."""
    with path.open() as f:
        return {(r["acquisition"], r["source"]): (float(r["margin_best_classical"]), float(r["margin_zero_filled"]))
                for r in csv.DictReader(f) if r["method"] == method and r["source"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="multisource")
    args = ap.parse_args(argv)
    seen = read(REPO / f"results/sources_{args.preset}/sources_summary.csv")
    lines = [f"# Leave-one-source-out, preset `{args.preset}` (learned int8, whole-image PSNR margins, dB)", "",
             "Each held-out group's sources, evaluated with the model trained **without** that group "
             f"(`results/loso/{args.preset}_no_<group>/`) and with the model of the same preset trained on "
             f"every source (`results/sources_{args.preset}/`). Margins: over the best classical method on "
             "that source / over zero-filled. Made by `python models/tools/loso_table.py` after "
             "`scripts/loso.sh`; the classical rows are those of `results/sources/` (see scripts/loso.sh).", "",
             "| held out | source | acquisition | unseen: − best classical | unseen: − zero-filled "
             "| seen: − best classical | loss from unseen (dB) |", "|---|---|---|---|---|---|---|"]
    unseen_all, loss_all = [], []
    for group, sources in GROUPS.items():
        path = REPO / f"results/loso/{args.preset}_no_{group}/sources_summary.csv"
        if not path.is_file():
            lines.append(f"| {group} | — | — | not run (`LOSO_GROUPS={group} scripts/loso.sh`) | | | |")
            continue
        unseen = read(path)
        for source in sources:
            for acq in ACQUISITIONS:
                u, s = unseen.get((acq, source)), seen.get((acq, source))
                if u is None or s is None:
                    continue
                unseen_all.append(u[0])
                loss_all.append(s[0] - u[0])
                lines.append(f"| {group} | {source} | {acq} | {u[0]:+.2f} | {u[1]:+.2f} | {s[0]:+.2f} | {s[0] - u[0]:+.2f} |")
    if unseen_all:
        lines += ["", f"Mean over held-out rows: margin over best classical {sum(unseen_all) / len(unseen_all):+.2f} dB "
                      f"(worst {min(unseen_all):+.2f}); loss from leaving the source out "
                      f"{sum(loss_all) / len(loss_all):+.2f} dB (largest {max(loss_all):+.2f})."]
    out = REPO / "results/loso/loso.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
