#!/usr/bin/env python
"""Draw the MedDiffFM icon (128x128 PNG): an axial CT slice that turns from noise (left) into a
clean image (right), the diffusion idea. Writes MedDiffFM/Resources/Icons/MedDiffFM.png and the
extension icon Resources/Icons/MedDiffFM.png. Needs numpy and Pillow."""

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = 128


def ctSlice(n):
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    cx, cy = n / 2, n / 2 + 2
    body = ((x - cx) / (0.44 * n)) ** 2 + ((y - cy) / (0.34 * n)) ** 2 <= 1
    image = np.where(body, 0.55, 0.0)
    for sx in (-1, 1):  # lungs
        lung = ((x - cx - sx * 0.19 * n) / (0.15 * n)) ** 2 + ((y - cy + 0.02 * n) / (0.22 * n)) ** 2 <= 1
        image = np.where(lung, 0.12, image)
    spine = ((x - cx) / (0.06 * n)) ** 2 + ((y - cy - 0.2 * n) / (0.06 * n)) ** 2 <= 1
    heart = ((x - cx + 0.05 * n) / (0.1 * n)) ** 2 + ((y - cy + 0.02 * n) / (0.09 * n)) ** 2 <= 1
    image = np.where(heart, 0.72, image)
    image = np.where(spine, 0.97, image)
    ring = body & (((x - cx) / (0.41 * n)) ** 2 + ((y - cy) / (0.31 * n)) ** 2 > 1)
    return np.where(ring, 0.8, image), body


def draw(path):
    n = SIZE
    image, body = ctSlice(n)
    rng = np.random.default_rng(7)
    x = np.linspace(0, 1, n)[None, :]
    noiseLevel = np.clip((0.62 - x) / 0.5, 0, 1) ** 1.3  # noisy on the left, clean on the right
    noisy = np.clip(image * (1 - noiseLevel) + rng.random((n, n)) * noiseLevel, 0, 1)
    grey = (noisy * 255).astype(np.uint8)
    rgba = np.zeros((n, n, 4), np.uint8)
    rgba[..., 0] = grey
    rgba[..., 1] = grey
    rgba[..., 2] = np.clip(grey.astype(int) + 12, 0, 255)
    rgba[..., 3] = 255
    tile = Image.fromarray(rgba, "RGBA")
    # rounded square mask with a dark blue background
    background = Image.new("RGBA", (n, n), (18, 38, 74, 255))
    mask = Image.new("L", (n, n), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, n - 1, n - 1), radius=22, fill=255)
    bodyMask = Image.fromarray((body * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    icon = Image.composite(tile, background, bodyMask)
    # a small "hot spot" (anomaly) on the clean side
    d = ImageDraw.Draw(icon)
    d.ellipse((82, 52, 96, 66), outline=(255, 120, 30, 255), width=3)
    out = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    out.paste(icon, (0, 0), mask)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    out.save(path)


if __name__ == "__main__":
    for target in (os.path.join(ROOT, "MedDiffFM", "Resources", "Icons", "MedDiffFM.png"),
                   os.path.join(ROOT, "Resources", "Icons", "MedDiffFM.png")):
        draw(target)
        print("wrote", target)
