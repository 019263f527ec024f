#!/usr/bin/env python3
# A stand-in for the cluster guide's per-image script, behaving as the guide
# prints it: `-file F -out DIR`, four progress lines, the result written to
# DIR/<file name>.txt without f.close(), sys.exit(0) from inside the
# function; a file Pillow cannot open ends in a traceback and exit 1; a
# usage hint and exit 1 without both arguments. Kept as a user would write
# it (tests/test_command.py runs it unchanged through the workflow).
import os
import sys

from PIL import Image, ImageStat


def process_image(source, out_dir):
    print("Opening source image: " + source)
    img = Image.open(source)
    print("Converting to greyscale")
    grey = img.convert("L")
    print("Measuring pixel values")
    stat = ImageStat.Stat(grey)
    low, high = stat.extrema[0]
    mean = stat.mean[0]
    dest = os.path.join(out_dir, os.path.basename(source) + ".txt")
    print("Saving pixel data as: " + dest)
    f = open(dest, "w")
    f.write("filename:" + source + " min:" + str(low) + " max:" + str(high) + " mean:" + str(mean) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) != 4 or args[0] != "-file" or args[2] != "-out":
        print("Usage: image_processor.py -file <image file> -out <output folder>")
        sys.exit(1)
    process_image(args[1], args[3])
