"""An encoded image's format and size, read from its first bytes before any pixel is decoded,
so that a request or a tracker state cannot make a decoder allocate gigabytes."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from autotrack.errors import InputError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (reserved) and CC (DAC) do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RST0..7 stand alone


class ImageHeaderError(InputError):
    """Bytes that are not a whole header of a supported image; ``field`` names the input."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ImageHeader:
    """Format and size read from an encoded image's first bytes, before any pixel is decoded."""

    format: str  # "png", "jpeg", "bmp" or "webp"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_image_header(data: bytes, *, field: str = "image") -> ImageHeader:
    """Format and size from the first bytes of a PNG, JPEG, BMP or WebP file."""
    if data.startswith(_PNG_SIGNATURE):
        header = _png_header(data, field)
    elif data.startswith(b"\xff\xd8"):
        header = _jpeg_header(data, field)
    elif data.startswith(b"BM"):
        header = _bmp_header(data, field)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        header = _webp_header(data, field)
    else:
        raise ImageHeaderError(
            f"'{field}' is not a supported image: expected JPEG, PNG, BMP or WebP data, "
            f"got bytes starting {data[:8].hex(' ')}",
            field=field,
        )
    if header.width <= 0 or header.height <= 0:
        raise ImageHeaderError(
            f"'{field}' is an empty {header.format.upper()} image "
            f"({header.width}x{header.height})",
            field=field,
        )
    return header


def _png_header(data: bytes, field: str) -> ImageHeader:
    if len(data) < 24:
        raise _truncated("PNG", field)
    if data[12:16] != b"IHDR":
        raise ImageHeaderError(f"'{field}' is a corrupt PNG: its first chunk is not IHDR", field=field)
    width, height = struct.unpack(">II", data[16:24])
    return ImageHeader("png", width, height)


def _jpeg_header(data: bytes, field: str) -> ImageHeader:
    """Walk the marker segments up to the first start-of-frame, which holds the size."""
    pos, end = 2, len(data)
    while True:
        if pos >= end:
            raise _truncated("JPEG", field)
        if data[pos] != 0xFF:
            raise ImageHeaderError(
                f"'{field}' is a corrupt JPEG: no marker at byte {pos}", field=field
            )
        while pos < end and data[pos] == 0xFF:  # fill bytes may pad any marker
            pos += 1
        if pos >= end:
            raise _truncated("JPEG", field)
        marker = data[pos]
        pos += 1
        if marker in _JPEG_NO_LENGTH:
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data, before any frame header
            raise ImageHeaderError(
                f"'{field}' is a corrupt JPEG: image data starts before its frame header",
                field=field,
            )
        if pos + 2 > end:
            raise _truncated("JPEG", field)
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            raise ImageHeaderError(
                f"'{field}' is a corrupt JPEG: segment length {length}", field=field
            )
        if marker in _JPEG_SOF:
            if pos + 7 > end:
                raise _truncated("JPEG", field)
            height, width = struct.unpack(">HH", data[pos + 3:pos + 7])
            return ImageHeader("jpeg", width, height)
        pos += length


def _bmp_header(data: bytes, field: str) -> ImageHeader:
    if len(data) < 26:
        raise _truncated("BMP", field)
    dib_size = struct.unpack("<I", data[14:18])[0]
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER: unsigned 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    elif dib_size >= 40:  # BITMAPINFOHEADER and later: negative height means top-down rows
        width, height = struct.unpack("<ii", data[18:26])
        height = abs(height)
    else:
        raise ImageHeaderError(f"'{field}' is a corrupt BMP: header size {dib_size}", field=field)
    return ImageHeader("bmp", width, height)


def _webp_header(data: bytes, field: str) -> ImageHeader:
    if len(data) < 30:
        raise _truncated("WebP", field)
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: key frame start code, then 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            raise ImageHeaderError(f"'{field}' is a corrupt WebP (VP8) image", field=field)
        width, height = (v & 0x3FFF for v in struct.unpack("<HH", data[26:30]))
    elif chunk == b"VP8L":  # lossless: signature byte, then 14-bit sizes minus one
        if data[20] != 0x2F:
            raise ImageHeaderError(f"'{field}' is a corrupt WebP (VP8L) image", field=field)
        bits = struct.unpack("<I", data[21:25])[0]
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8X":  # extended: 24-bit canvas sizes minus one
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
    else:
        raise ImageHeaderError(f"'{field}' is a WebP file of unknown kind {chunk!r}", field=field)
    return ImageHeader("webp", width, height)


def _truncated(kind: str, field: str) -> ImageHeaderError:
    return ImageHeaderError(f"'{field}' is a truncated {kind}: its header is incomplete", field=field)
