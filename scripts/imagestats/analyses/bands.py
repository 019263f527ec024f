"""bands: min, max, mean and median of each of the image's own bands.

For EuroSAT's RGB JPEGs that is R_min, R_max, R_mean, R_median, then G_...
and B_...; a greyscale image has L_..., an RGBA image A_... as well. The
numbers are Pillow's ImageStat of the image as stored (no conversion).
A short function to copy for your own analysis: it needs only Pillow.
"""

from PIL import ImageStat


def bands(image):
    stat = ImageStat.Stat(image)
    row = {}
    for band, (low, high), mean, median in zip(image.getbands(), stat.extrema, stat.mean, stat.median):
        row[f"{band}_min"] = low
        row[f"{band}_max"] = high
        row[f"{band}_mean"] = mean
        row[f"{band}_median"] = median
    return row
