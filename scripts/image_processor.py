#!/usr/bin/env python3
"""The cluster guide's per-image script, kept as a drop-in for task arrays.

    python scripts/image_processor.py -file EuroSAT_RGB/Forest/Forest_1.jpg -out results/

prints and writes to OUT/<image file name>.txt (here results/Forest_1.jpg.txt,
as the guide's metadata/Residential_1.jpg.txt) the guide's line

    filename:EuroSAT_RGB/Forest/Forest_1.jpg min:65 max:95 mean:79.522705078125

using the same measurement code as the workflow. The name keeps the image's
extension, so Forest_1.jpg and Forest_1.png give two result files. A file
Pillow cannot read gives `filename:F error:<what is wrong>` and exit status 1,
so a task array element fails visibly. For more than a handful of images use the workflow:
one Python start per image costs ~50 ms for ~0.2 ms of work.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imagestats.measure import configure, measure  # noqa: E402


def guide_line(file, row):
    if row["error"]:
        return f"filename:{file} error:{row['error']}"
    return f"filename:{file} min:{row['min']} max:{row['max']} mean:{row['mean']}"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Brightness statistics of one image.")
    parser.add_argument("-file", required=True, help="image to measure")
    parser.add_argument("-out", required=True, help="folder for the result file")
    args = parser.parse_args(argv)
    configure(89478485)
    row = measure(args.file, args.file)
    line = guide_line(args.file, row)
    os.makedirs(args.out, exist_ok=True)
    name = os.path.basename(args.file) + ".txt"
    with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
        f.write(line + "\n")
    print(line)
    return 1 if row["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
