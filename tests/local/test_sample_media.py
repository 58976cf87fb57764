"""The demo's media are real files: a PNG any viewer opens, an H.264 MP4 any player plays."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import imageio_ffmpeg
from wan_relay_local.sample_media import mp4_video, png_image

from .conftest import PNG_SIGNATURE, assert_playable_mp4


def test_png_is_a_valid_truecolour_image_whose_colours_follow_the_seed() -> None:
    image = png_image("fox", width=64, height=32)

    assert image.startswith(PNG_SIGNATURE)
    width, height, depth, colour = struct.unpack(">IIBB", image[16:26])
    assert (width, height, depth, colour) == (64, 32, 8, 2)
    idat = image[image.index(b"IDAT") + 4 : image.index(b"IEND") - 8]
    assert len(zlib.decompress(idat)) == 32 * (1 + 64 * 3)
    assert png_image("fox", 64, 32) == image != png_image("owl", 64, 32)


def test_mp4_holds_one_h264_picture_per_frame() -> None:
    video = mp4_video("clip", width=64, height=48, fps=10, seconds=1)

    assert_playable_mp4(video)
    stsz = video.index(b"stsz")
    assert struct.unpack(">I", video[stsz + 12 : stsz + 16])[0] == 10


def test_a_real_decoder_plays_every_frame_of_the_video(tmp_path: Path) -> None:
    """FFmpeg (the static build pinned as imageio-ffmpeg, so the check runs on every machine) decodes the
    demo's video without an error: H.264, 64x48, ten pictures of 64x48 in YUV 4:2:0, each its own."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    path = tmp_path / "clip.mp4"
    path.write_bytes(mp4_video("clip", width=64, height=48, fps=10, seconds=1))

    decoded = subprocess.run([ffmpeg, "-hide_banner", "-v", "error", "-i", str(path), "-map", "0:v:0",
                              "-f", "framemd5", "-"], capture_output=True, text=True, check=True)
    described = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True)

    assert decoded.stderr == ""  # not one decoding error
    frames = [line.split(",") for line in decoded.stdout.splitlines() if line and not line.startswith("#")]
    assert [int(frame[4]) for frame in frames] == [64 * 48 * 3 // 2] * 10
    assert len({frame[5].strip() for frame in frames}) == 10  # ten pictures, not one repeated
    [stream] = [line for line in described.stderr.splitlines() if "Video:" in line]
    assert "Video: h264" in stream and "64x48" in stream
