#!/usr/bin/env python3
"""Writes the PNG fixtures of tests/data/images/ with the standard library only
(zlib, struct): the same 12 x 12 picture in several PNG encodings, and its
pixels / 255 as a float32 (12, 12, 3) .npy. The pixel at row y, column x is
    R = (17·x + 5·y) mod 256, G = (3·x·y + 40) mod 256, B = (255 − 11·y) mod 256,
which tests/io/png_read_test.cpp recomputes.

    python3 tests/data/make_png_fixtures.py
"""
import pathlib
import struct
import zlib

H = W = 12
OUT = pathlib.Path(__file__).resolve().parent / "images"


def pixel(x, y):
    return ((17 * x + 5 * y) % 256, (3 * x * y + 40) % 256, (255 - 11 * y) % 256)


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png(width, height, bit_depth, color_type, rows, palette=None, interlace=0):
    """rows: the filtered scanlines' bytes without filter bytes (filter 0 added)."""
    raw = b"".join(b"\x00" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace))
    if palette is not None:
        out += chunk(b"PLTE", b"".join(bytes(c) for c in palette))
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def npy_float32(shape, values):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % ", ".join(str(s) for s in shape)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + struct.pack("<%df" % len(values), *values)


def main():
    OUT.mkdir(exist_ok=True)
    rgb = [bytes(v for x in range(W) for v in pixel(x, y)) for y in range(H)]
    (OUT / "rgb8.png").write_bytes(png(W, H, 8, 2, rgb))
    # 16-bit RGB: each 8-bit value v stored as v·257, which libpng maps back to v.
    rgb16 = [b"".join(struct.pack(">H", v * 257) for x in range(W) for v in pixel(x, y)) for y in range(H)]
    (OUT / "rgb16.png").write_bytes(png(W, H, 16, 2, rgb16))
    # RGBA, fully opaque: the alpha channel must not change the colours.
    rgba = [bytes(v for x in range(W) for v in pixel(x, y) + (255,)) for y in range(H)]
    (OUT / "rgba8.png").write_bytes(png(W, H, 8, 6, rgba))
    # Gray: R = G = B = (17·x + 5·y) mod 256.
    gray = [bytes(pixel(x, y)[0] for x in range(W)) for y in range(H)]
    (OUT / "gray8.png").write_bytes(png(W, H, 8, 0, gray))
    # A palette of the picture's colours.
    colours = sorted({pixel(x, y) for y in range(H) for x in range(W)})
    index = {c: i for i, c in enumerate(colours)}
    assert len(colours) <= 256
    pal = [bytes(index[pixel(x, y)] for x in range(W)) for y in range(H)]
    (OUT / "palette8.png").write_bytes(png(W, H, 8, 3, pal, palette=colours))
    # The same picture as values in [0, 1], as a .npy image.
    values = [v / 255.0 for y in range(H) for x in range(W) for v in pixel(x, y)]
    (OUT / "rgb8.npy").write_bytes(npy_float32((H, W, 3), values))
    # A PNG cut short inside its image data.
    whole = (OUT / "rgb8.png").read_bytes()
    (OUT / "truncated.png").write_bytes(whole[: len(whole) // 2])


if __name__ == "__main__":
    main()
