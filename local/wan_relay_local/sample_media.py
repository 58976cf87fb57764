"""Small real media files made offline, for the demo's replayed tasks: PNG images any viewer opens
and an H.264 MP4 any player plays, built with the standard library only.

The video is encoded losslessly with I_PCM macroblocks (raw samples, no prediction or entropy
coding): large per pixel, but a few hundred kilobytes for a two-second thumbnail-sized clip, and
simple enough to write in a page of Python.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import struct
import zlib
from collections.abc import Iterator

# --- PNG --------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _hue(seed: str) -> float:
    return hashlib.sha256(seed.encode()).digest()[0] / 255.0


def png_image(seed: str, width: int = 256, height: int = 256) -> bytes:
    """An RGB PNG: a diagonal colour gradient with soft rings; the colours depend on `seed`."""
    hue = _hue(seed)
    rows = bytearray()
    cx, cy = width * 0.62, height * 0.38
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            ring = 0.5 + 0.5 * math.cos(math.hypot(x - cx, y - cy) / 9.0)
            h = (hue + 0.25 * (x + y) / (width + height)) % 1.0
            r, g, b = colorsys.hsv_to_rgb(h, 0.55 + 0.35 * ring, 0.45 + 0.5 * (y / height) * 0.6 + 0.15 * ring)
            rows += bytes((int(r * 255), int(g * 255), int(b * 255)))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _png_chunk(b"IEND", b"")
    )


# --- H.264 (Baseline, I_PCM) ------------------------------------------------------------------


class _Bits:
    """An MSB-first bit writer with the Exp-Golomb codes of H.264."""

    def __init__(self) -> None:
        self._bits: list[int] = []

    def u(self, width: int, value: int) -> None:
        self._bits.extend((value >> (width - 1 - i)) & 1 for i in range(width))

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() * 2 - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        while len(self._bits) % 8:
            self._bits.append(0)

    def trailing(self) -> None:
        self._bits.append(1)
        self.align_zero()

    def raw(self, data: bytes) -> None:
        assert len(self._bits) % 8 == 0
        for byte in data:
            self.u(8, byte)

    def tobytes(self) -> bytes:
        assert len(self._bits) % 8 == 0
        out = bytearray()
        for i in range(0, len(self._bits), 8):
            byte = 0
            for bit in self._bits[i : i + 8]:
                byte = (byte << 1) | bit
            out.append(byte)
        return bytes(out)


def _nal(ref_idc: int, unit_type: int, rbsp: bytes) -> bytes:
    """A NAL unit (no start code) with emulation prevention bytes inserted."""
    out = bytearray([(ref_idc << 5) | unit_type])
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


_PROFILE_BASELINE = 66
_CONSTRAINTS = 0xC0  # constraint_set0 and set1: decodable by any Baseline/Main decoder
_LEVEL = 30


def _sps(mb_width: int, mb_height: int) -> bytes:
    b = _Bits()
    b.u(8, _PROFILE_BASELINE)
    b.u(8, _CONSTRAINTS)
    b.u(8, _LEVEL)
    b.ue(0)  # seq_parameter_set_id
    b.ue(0)  # log2_max_frame_num_minus4
    b.ue(2)  # pic_order_cnt_type: from frame_num
    b.ue(1)  # max_num_ref_frames
    b.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    b.ue(mb_width - 1)
    b.ue(mb_height - 1)
    b.u(1, 1)  # frame_mbs_only_flag
    b.u(1, 1)  # direct_8x8_inference_flag
    b.u(1, 0)  # frame_cropping_flag
    b.u(1, 0)  # vui_parameters_present_flag
    b.trailing()
    return _nal(3, 7, b.tobytes())


def _pps() -> bytes:
    b = _Bits()
    b.ue(0)  # pic_parameter_set_id
    b.ue(0)  # seq_parameter_set_id
    b.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    b.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    b.ue(0)  # num_slice_groups_minus1
    b.ue(0)  # num_ref_idx_l0_default_active_minus1
    b.ue(0)  # num_ref_idx_l1_default_active_minus1
    b.u(1, 0)  # weighted_pred_flag
    b.u(2, 0)  # weighted_bipred_idc
    b.se(0)  # pic_init_qp_minus26
    b.se(0)  # pic_init_qs_minus26
    b.se(0)  # chroma_qp_index_offset
    b.u(1, 0)  # deblocking_filter_control_present_flag
    b.u(1, 0)  # constrained_intra_pred_flag
    b.u(1, 0)  # redundant_pic_cnt_present_flag
    b.trailing()
    return _nal(3, 8, b.tobytes())


def _idr_slice(frame: int, mb_width: int, mb_height: int, pixels: Iterator[bytes]) -> bytes:
    """One IDR picture, every macroblock I_PCM; `pixels` yields each macroblock's 384 samples."""
    b = _Bits()
    b.ue(0)  # first_mb_in_slice
    b.ue(7)  # slice_type: I (every slice of the picture)
    b.ue(0)  # pic_parameter_set_id
    b.u(4, 0)  # frame_num (log2_max_frame_num = 4)
    b.ue(frame % 2)  # idr_pic_id: differs between consecutive IDR pictures
    b.u(1, 0)  # no_output_of_prior_pics_flag
    b.u(1, 0)  # long_term_reference_flag
    b.se(0)  # slice_qp_delta
    for _ in range(mb_width * mb_height):
        b.ue(25)  # mb_type: I_PCM
        b.align_zero()  # pcm_alignment_zero_bit
        b.raw(next(pixels))
    b.trailing()
    return _nal(3, 5, b.tobytes())


def _frame_macroblocks(frame: int, frames: int, mb_width: int, mb_height: int, hue: float) -> Iterator[bytes]:
    """The samples (Y 16x16, Cb 8x8, Cr 8x8) of each macroblock of a moving colour wave."""
    width, height = mb_width * 16, mb_height * 16
    phase = 2 * math.pi * frame / frames
    luma = [[0] * width for _ in range(height)]
    for y in range(height):
        for x in range(width):
            wave = math.sin(x / 11.0 + phase) + math.cos(y / 9.0 - 2 * phase)
            luma[y][x] = max(16, min(235, int(126 + 48 * wave + 40 * (x / width - 0.5))))
    ball_x = width * (0.5 + 0.35 * math.cos(phase))
    ball_y = height * (0.5 + 0.3 * math.sin(phase))
    chroma_u = [[0] * (width // 2) for _ in range(height // 2)]
    chroma_v = [[0] * (width // 2) for _ in range(height // 2)]
    for y in range(height // 2):
        for x in range(width // 2):
            inside = math.hypot(2 * x - ball_x, 2 * y - ball_y) < height * 0.22
            angle = 2 * math.pi * ((hue + (0.5 if inside else 0.0) + x / width * 0.3) % 1.0)
            chroma_u[y][x] = max(16, min(240, int(128 + 90 * math.cos(angle))))
            chroma_v[y][x] = max(16, min(240, int(128 + 90 * math.sin(angle))))
    for my in range(mb_height):
        for mx in range(mb_width):
            samples = bytearray()
            for y in range(16):
                samples += bytes(luma[my * 16 + y][mx * 16 : mx * 16 + 16])
            for plane in (chroma_u, chroma_v):
                for y in range(8):
                    samples += bytes(plane[my * 8 + y][mx * 8 : mx * 8 + 8])
            yield bytes(samples)


# --- MP4 --------------------------------------------------------------------------------------


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def mp4_video(seed: str, *, width: int = 128, height: int = 96, fps: int = 15, seconds: float = 2.0) -> bytes:
    """A playable H.264 (Baseline) MP4 of a moving colour wave; `seed` picks the colours."""
    mb_width, mb_height = width // 16, height // 16
    width, height = mb_width * 16, mb_height * 16
    frames = max(1, int(fps * seconds))
    hue = _hue(seed)
    sps, pps = _sps(mb_width, mb_height), _pps()
    samples = []
    for frame in range(frames):
        nal = _idr_slice(frame, mb_width, mb_height, _frame_macroblocks(frame, frames, mb_width, mb_height, hue))
        samples.append(struct.pack(">I", len(nal)) + nal)

    timescale, delta = 90000, 90000 // fps
    media_duration = frames * delta
    movie_duration = media_duration * 1000 // timescale

    avcc = _box(
        b"avcC",
        bytes([1, _PROFILE_BASELINE, _CONSTRAINTS, _LEVEL, 0xFF, 0xE1]),
        struct.pack(">H", len(sps)), sps,
        b"\x01", struct.pack(">H", len(pps)), pps,
    )
    avc1 = _box(
        b"avc1",
        b"\x00" * 6, struct.pack(">H", 1),  # reserved, data_reference_index
        b"\x00" * 16,  # pre_defined, reserved
        struct.pack(">HHIIIH", width, height, 0x00480000, 0x00480000, 0, 1),
        b"\x00" * 32,  # compressorname
        struct.pack(">Hh", 0x0018, -1),
        avcc,
    )

    def moov(chunk_offset: int) -> bytes:
        stbl = _box(
            b"stbl",
            _full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
            _full_box(b"stts", 0, 0, struct.pack(">III", 1, frames, delta)),
            _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, frames, 1)),
            _full_box(b"stsz", 0, 0, struct.pack(">II", 0, frames), *(struct.pack(">I", len(s)) for s in samples)),
            _full_box(b"stco", 0, 0, struct.pack(">II", 1, chunk_offset)),
        )
        minf = _box(
            b"minf",
            _full_box(b"vmhd", 0, 1, struct.pack(">HHHH", 0, 0, 0, 0)),
            _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1))),
            stbl,
        )
        mdia = _box(
            b"mdia",
            _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, media_duration, 0x55C4, 0)),
            _full_box(b"hdlr", 0, 0, struct.pack(">I4s12s", 0, b"vide", b""), b"VideoHandler\x00"),
            minf,
        )
        tkhd = _full_box(
            b"tkhd", 0, 3,
            struct.pack(">IIIII", 0, 0, 1, 0, movie_duration),
            b"\x00" * 8, struct.pack(">hhhH", 0, 0, 0, 0), _MATRIX,
            struct.pack(">II", width << 16, height << 16),
        )
        mvhd = _full_box(
            b"mvhd", 0, 0,
            struct.pack(">IIIIIH", 0, 0, 1000, movie_duration, 0x00010000, 0x0100),
            b"\x00" * 10, _MATRIX, b"\x00" * 24, struct.pack(">I", 2),
        )
        return _box(b"moov", mvhd, _box(b"trak", tkhd, mdia))

    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    mdat_header_size = 8
    offset = len(ftyp) + len(moov(0)) + mdat_header_size
    return ftyp + moov(offset) + _box(b"mdat", *samples)
