"""Frames as requests carry them (base64 of an encoded image), made valid and broken.

:class:`Frames` holds a few real frames (bedroom, vtest.avi) decoded at small sizes;
:func:`mutate_image` turns one base64 image field into another: a different valid encoding
(PNG, BMP, WebP, grayscale, 16-bit, alpha, progressive), a different size (1 px to the
8192 x 8192 limit and one over), broken base64 (bad characters, padding, URL-safe alphabet,
a data-URI prefix, truncation) and broken bytes under valid base64 (truncated files, flipped
bits, another format's signature, headers claiming huge or empty sizes, a real JPEG or PNG
whose header was patched to claim another size).
"""

from __future__ import annotations

import base64
import random
import struct
import zlib
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LIMIT_SIDE = 8192  # the default AUTOTRACK_MAX_IMAGE_PIXELS is 8192 * 8192
CLAIMED_SIDES = (0, 1, 2, 8192, 8193, 16384, 65535, 65536, 100_000, 2**31 - 1, 2**32 - 1)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes | None:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except Exception:
        return None


def encode(frame: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    suffix, params = {
        "jpeg": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality]),
        "progressive": (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        "png": (".png", []),
        "bmp": (".bmp", []),
        "webp": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
        "webp-lossless": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
    }[fmt]
    ok, data = cv2.imencode(suffix, frame, params)
    if not ok:
        raise RuntimeError(f"cv2 cannot encode {fmt}")
    return data.tobytes()


class Frames:
    """A few real frames at small sizes; requests are built from these."""

    def __init__(self, data_dir: Path, size: tuple[int, int] = (160, 90),
                 source: str = "bedroom", count: int = 6) -> None:
        self.size = size
        self.frames: list[np.ndarray] = []
        if source == "bedroom":
            for index in range(count):
                image = cv2.imread(str(data_dir / "videos" / "bedroom" / f"{index:05d}.jpg"))
                if image is None:
                    raise FileNotFoundError(f"bedroom frame {index} under {data_dir}")
                self.frames.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        else:
            capture = cv2.VideoCapture(str(data_dir / "videos" / "vtest.avi"))
            try:
                for index in range(120 + count):
                    ok, image = capture.read()
                    if not ok:
                        raise FileNotFoundError(f"vtest.avi frame {index} under {data_dir}")
                    if index >= 120:
                        self.frames.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
            finally:
                capture.release()
        self._encoded = [b64(encode(f)) for f in self.frames]

    def __len__(self) -> int:
        return len(self.frames)

    def b64(self, index: int) -> str:
        return self._encoded[index % len(self._encoded)]


@lru_cache(maxsize=16)
def plain_image(width: int, height: int, fmt: str) -> bytes:
    """A cheap-to-encode image of any size: a gradient with a few blocks (cached)."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 0] = (np.arange(width, dtype=np.uint32) * 255 // max(width, 1))[None, :]
    frame[..., 1] = (np.arange(height, dtype=np.uint32) * 255 // max(height, 1))[:, None]
    frame[height // 4: height // 2, width // 4: width // 2] = (40, 200, 90)
    return encode(frame, fmt)


def png_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header claims ``width`` x ``height``."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width % 2**32, height % 2**32, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """JPEG markers up to a baseline frame header claiming ``width`` x ``height``."""
    sof = struct.pack(">BHHB", 8, height % 65536, width % 65536, 3) + \
        bytes([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1])
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def bmp_claiming(width: int, height: int) -> bytes:
    header = struct.pack("<2sIHHI", b"BM", 54, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, _int32(width), _int32(height), 1, 24, 0, 0, 0, 0,
                       0, 0)
    return header + info + b"\0" * 12


def webp_claiming(width: int, height: int) -> bytes:
    w, h = (max(v - 1, 0) % 2**24 for v in (width, height))
    payload = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + w.to_bytes(3, "little") + \
        h.to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(payload) + 4) + b"WEBP" + payload


def _int32(value: int) -> int:
    value %= 2**32
    return value - 2**32 if value >= 2**31 else value


def patch_size(data: bytes, width: int, height: int) -> bytes:
    """A real JPEG or PNG whose own header now claims another size (the pixels unchanged)."""
    if data.startswith(PNG_SIGNATURE):
        return data[:16] + struct.pack(">II", width % 2**32, height % 2**32) + data[24:]
    if data.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 9 < len(data) and data[pos] == 0xFF:
            marker = data[pos + 1]
            length = (data[pos + 2] << 8) | data[pos + 3]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return data[:pos + 5] + struct.pack(">HH", height % 65536, width % 65536) + \
                    data[pos + 9:]
            pos += 2 + length
    return data


def mutate_image(value: object, frames: Frames, rng: random.Random, *,
                 max_side: int = LIMIT_SIDE) -> tuple[object, str]:
    """Another value for a base64 image field, and what was done."""
    data = unb64(value) if isinstance(value, str) else None
    if not data:
        data = encode(frames.frames[0])
    try:
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        frame = None
    if frame is None or frame.ndim != 3 or frame.size > 4096 * 4096 * 3:
        frame = frames.frames[0]
    text = b64(data)
    roll = rng.random()
    if roll < 0.22:  # another valid encoding of the same pixels, or other pixels
        fmt = rng.choice(("png", "bmp", "webp", "webp-lossless", "progressive", "jpeg"))
        how = rng.random()
        if how < 0.2:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            return b64(encode(gray, rng.choice(("jpeg", "png")))), "grayscale"
        if how < 0.3:
            alpha = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
            alpha[..., 3] = 0
            return b64(encode(alpha, "png")), "png with a transparent alpha channel"
        if how < 0.38:
            return b64(encode(frame.astype(np.uint16) * 257, "png")), "16-bit png"
        if how < 0.45:
            return b64(encode(frame, "jpeg", quality=rng.choice((1, 5)))), "jpeg quality 1-5"
        return b64(encode(frame, fmt)), f"re-encoded as {fmt}"
    if roll < 0.40:  # other sizes, from one pixel to the limit and one over
        sides = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (1, 300), (300, 1), (17, 9),
                 (161, 91), (640, 360)]
        big = [(1024, 1024), (1920, 1080), (4096, 4096), (LIMIT_SIDE, LIMIT_SIDE),
               (LIMIT_SIDE + 1, LIMIT_SIDE), (16384, 2)]
        choices = sides + [s for s in big if max(s) <= max_side]
        width, height = rng.choice(choices)
        if width * height <= 640 * 360:
            resized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
            return b64(encode(resized, rng.choice(("jpeg", "png")))), f"{width}x{height} image"
        fmt = rng.choice(("jpeg", "png"))
        return b64(plain_image(width, height, fmt)), f"{width}x{height} {fmt}"
    if roll < 0.58:  # broken base64 text
        ops = [
            (lambda: text[: rng.randrange(1, max(2, len(text)))], "truncated base64 text"),
            (lambda: text.rstrip("="), "base64 without padding"),
            (lambda: text + "=", "base64 with extra padding"),
            (lambda: text + "==" + text, "two base64 texts joined"),
            (lambda: text.replace("+", "-").replace("/", "_"), "URL-safe base64 alphabet"),
            (lambda: "data:image/jpeg;base64," + text, "data-URI prefix"),
            (lambda: "\n".join(text[i:i + 76] for i in range(0, len(text), 76)),
             "line-wrapped base64"),
            (lambda: " " * 3 + text + "\t\r\n", "base64 with surrounding whitespace"),
            (lambda: _insert(text, rng, rng.choice("!*.$é\x00\ud800")), "bad base64 character"),
            (lambda: "", "empty string"),
            (lambda: " \n ", "whitespace only"),
            (lambda: "====", "padding only"),
            (lambda: "A", "one base64 character"),
            (lambda: text.encode("ascii").hex(), "hex instead of base64"),
            (lambda: b64(text.encode("ascii")), "base64 twice"),
            (lambda: list(data[:64]), "bytes as a list of numbers"),
            (lambda: {"data": text}, "base64 inside an object"),
        ]
        make, what = rng.choice(ops)
        return make(), what
    # broken bytes under valid base64
    ops = [
        (lambda: data[: max(1, int(len(data) * rng.choice((0.02, 0.1, 0.5, 0.9))))],
         "truncated file"),
        (lambda: data[:-1], "file missing its last byte"),
        (lambda: data[: rng.choice((2, 4, 8, 16, 24, 30))], "header bytes only"),
        (lambda: _flip(data, rng, rng.choice((1, 8, 64))), "flipped bytes"),
        (lambda: _flip(data, rng, 4, head=64), "flipped header bytes"),
        (lambda: PNG_SIGNATURE + data[8:], "PNG signature on other data"),
        (lambda: b"\xff\xd8" + data[2:], "JPEG signature on other data"),
        (lambda: b"BM" + data[2:], "BMP signature on other data"),
        (lambda: b"RIFF\0\0\0\0WEBPVP8 " + data[16:], "WebP signature on other data"),
        (lambda: b"GIF89a" + data[6:], "GIF"),
        (lambda: b"II*\0" + data[4:], "TIFF"),
        (lambda: b"\0" * rng.choice((1, 100, 10_000)), "zero bytes"),
        (lambda: rng.randbytes(rng.choice((10, 1000, 100_000))), "random bytes"),
        (lambda: b"hello", "text instead of an image"),
        (lambda: data + b"\0garbage" * 100, "garbage after the image"),
        (lambda: data + data, "two images concatenated"),
        (lambda: png_claiming(*_claim(rng, max_side)), "PNG header claiming a size"),
        (lambda: jpeg_claiming(*_claim(rng, max_side)), "JPEG header claiming a size"),
        (lambda: bmp_claiming(*_claim(rng, max_side)), "BMP header claiming a size"),
        (lambda: webp_claiming(*_claim(rng, max_side)), "WebP header claiming a size"),
        (lambda: patch_size(encode(frame, rng.choice(("jpeg", "png"))), *_claim(rng, max_side)),
         "real image whose header claims another size"),
        (lambda: patch_size(encode(frame, "jpeg"), *(min(max_side, rng.choice(
            (LIMIT_SIDE, 4096, 2000))) for _ in "wh")),
         "small JPEG whose header claims a large size within the limit"),
    ]
    make, what = rng.choice(ops)
    return b64(make()), what


def _claim(rng: random.Random, max_side: int) -> tuple[int, int]:
    """A claimed size: any in :data:`CLAIMED_SIDES` that is refused before decoding, or
    within ``max_side`` (a claim under the limit is decoded, which costs its pixels)."""
    sides = [s for s in CLAIMED_SIDES if s <= max_side or s > LIMIT_SIDE]
    width, height = rng.choice(sides), rng.choice(sides)
    if 0 < width * height <= LIMIT_SIDE * LIMIT_SIDE and max(width, height) > max_side:
        width = min(width, max_side)
        height = min(height, max_side)
    return width, height


def _insert(text: str, rng: random.Random, char: str) -> str:
    i = rng.randrange(len(text) + 1)
    return text[:i] + char + text[i:]


def _flip(data: bytes, rng: random.Random, count: int, head: int | None = None) -> bytes:
    out = bytearray(data)
    span = min(len(out), head or len(out))
    for _ in range(count):
        if span:
            i = rng.randrange(span)
            out[i] ^= 1 << rng.randrange(8)
    return bytes(out)
