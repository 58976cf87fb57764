"""The demo's media are real files: a PNG any viewer opens, an H.264 MP4 any player plays."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
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


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")
def test_ffprobe_decodes_the_video(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(mp4_video("clip", width=64, height=48, fps=10, seconds=1))

    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,width,height,nb_read_frames",
         "-of", "default=noprint_wrappers=1", str(path)],
        capture_output=True, text=True, check=True,
    )

    assert probe.stdout.split() == ["codec_name=h264", "width=64", "height=48", "nb_read_frames=10"]
