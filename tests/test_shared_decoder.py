"""reader/shared_decoder.py: AV1 clips of GOP 2 or less decode through one codec context shared by
every clip, two frames a turn, into frames equal to torchcodec's (LeRobotDataset's decoder) pixel
for pixel; every clip whose frames could differ goes to torchcodec instead, before or during
decoding. Clips are re-encoded here by FFmpeg's SVT-AV1, lerobot's encoder."""

import io
import subprocess
import tarfile
from pathlib import Path

import av

import numpy as np
import pytest
import torch

from lerobot_wds.format import ShardEpisodeMeta
from lerobot_wds.packer.clip import ClipCutter, ClipRequest
from lerobot_wds.packer.sampletable import read_sample_table
from lerobot_wds.reader.episodes import EpisodeError, LoadedEpisode
from lerobot_wds.reader.shared_decoder import SharedClipDecoder, SharedPathEnded, open_shared
from lerobot_wds.reader.torchcodec_import import video_decoder_class
from lerobot_wds.reader.video import EpisodeVideo

VIDEOS = "tests/data/lerobot_v3_av1/videos/observation.images.top/chunk-000"
TOP = f"{VIDEOS}/file-002.mp4"  # lerobot's writer: AV1, a keyframe every second frame, untagged colour


def torchcodec_frames(clip: bytes) -> torch.Tensor:
    dec = video_decoder_class()(clip, seek_mode="exact")
    return dec.get_frames_in_range(0, dec.metadata.num_frames).data


def encode(tmp_path: Path, name: str, *args: str, source: str = TOP, start: float = 0.0, frames: int = 12,
           codec: str = "libsvtav1") -> Path:
    """The first ``frames`` frames of ``source`` from ``start`` s, re-encoded by FFmpeg."""
    out = tmp_path / f"{name}.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-ss", str(start), "-i", source, "-frames:v", str(frames),
                    "-c:v", codec, "-pix_fmt", "yuv420p", *args, str(out)], check=True, capture_output=True)
    return out


def demuxed(clip: bytes) -> list[tuple[int, int, bool]]:
    """Each packet's (byte offset, size, keyframe) as FFmpeg's demuxer gives them."""
    with av.open(io.BytesIO(clip)) as container:
        return [(p.pos, p.size, p.is_keyframe) for p in container.demux(container.streams.video[0]) if p.size]


def packets_of(dec: SharedClipDecoder) -> list[tuple[int, int, bool]]:
    return [(offset, size, key) for (offset, size), key in zip(dec._places, dec._key)]


def test_packet_places_come_from_the_sample_table_as_ffmpeg_demuxes_them(packed):
    """lerobot's files (many episodes each) and the packer's clips: the places the shared decoder
    reads from the ``moov`` box's tables are the packets FFmpeg's demuxer gives, one by one."""
    clips = [p.read_bytes() for p in sorted(Path("tests/data/lerobot_v3_av1/videos").glob("*/chunk-000/*.mp4"))]
    for shard in sorted(Path(packed("lerobot_v3_av1")).glob("*.tar")):
        with tarfile.open(shard) as tar:
            clips += [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".mp4")]
    assert len(clips) > 15
    for clip in clips:
        assert read_sample_table(io.BytesIO(clip)) is not None
        dec = open_shared(clip)
        assert isinstance(dec, SharedClipDecoder) and packets_of(dec) == demuxed(clip)


def test_a_clip_without_a_whole_sample_table_is_demuxed_packet_by_packet(tmp_path):
    """A fragmented mp4 (its samples listed per fragment, not in ``moov``): no table to read, so
    FFmpeg's demuxer gives the places, and the frames are still torchcodec's."""
    path = encode(tmp_path, "fragmented", "-g", "2", "-movflags", "frag_keyframe+empty_moov")
    clip = path.read_bytes()
    assert read_sample_table(io.BytesIO(clip)) is None
    dec = open_shared(clip)
    assert isinstance(dec, SharedClipDecoder) and packets_of(dec) == demuxed(clip)
    want = torchcodec_frames(clip)
    assert all(torch.equal(dec.frame_at(i).tensor(), want[i]) for i in range(len(want)))


@pytest.mark.parametrize("order", ["forward", "odd starts", "random", "backward"])
def test_frames_equal_torchcodecs_in_any_order(order):
    clip = Path(TOP).read_bytes()
    want = torchcodec_frames(clip)
    dec = open_shared(clip)
    assert isinstance(dec, SharedClipDecoder) and dec.num_frames == len(want)
    n = len(want)
    asked = {"forward": list(range(n)), "odd starts": list(range(1, n, 2)) + list(range(0, n, 2)),
             "random": list(np.random.default_rng(0).permutation(n)), "backward": list(range(n - 1, -1, -1))}[order]
    for i in asked:
        got = dec.frame_at(int(i)).tensor()
        assert got.shape == want[i].shape and torch.equal(got, want[i]), f"frame {i}"


def test_clips_take_turns_through_one_context():
    """As the pool draws: frame i of every clip before frame i + 1 of any, the same codec context
    decoding them all, each clip from a frame of its own."""
    clips = [Path(f"{VIDEOS}/file-00{k}.mp4").read_bytes() for k in range(4)]
    wants = [torchcodec_frames(c) for c in clips]
    decs = [open_shared(c) for c in clips]
    assert all(isinstance(d, SharedClipDecoder) for d in decs)
    starts = [0, 1, 5, 2]
    for step in range(min(len(w) for w in wants) - max(starts)):
        for dec, want, start in zip(decs, wants, starts):
            i = start + step
            assert torch.equal(dec.frame_at(i).tensor(), want[i]), f"frame {i}"


# (colour matrix, primaries, transfer, range) as FFmpeg names them; whether the shared path takes it
TAGS = [
    (None, None, None, None, True),
    ("unknown", None, None, "pc", True),
    ("smpte170m", "smpte170m", "smpte170m", "tv", True),
    ("bt470bg", "bt470bg", "gamma28", "pc", True),
    ("bt709", "bt709", "bt709", "tv", False),
    ("bt709", "bt709", "bt709", "pc", False),
]


@pytest.mark.parametrize("matrix,primaries,transfer,rng,shared", TAGS)
def test_colour_tags(tmp_path, matrix, primaries, transfer, rng, shared):
    """Under the colour tags the shared path takes, its frames equal torchcodec's; BT.709 goes to
    torchcodec (PyAV 15.1, lerobot 0.6.1's, converts it differently from torchcodec 0.11)."""
    tags = [flag for flag, value in (("-colorspace", matrix), ("-color_primaries", primaries),
                                     ("-color_trc", transfer), ("-color_range", rng)) if value for flag in (flag, value)]
    clip = encode(tmp_path, f"{matrix}_{rng}", "-g", "2", *tags).read_bytes()
    dec = open_shared(clip)
    assert (dec is not None) == shared
    if dec is not None:
        want = torchcodec_frames(clip)
        assert all(torch.equal(dec.frame_at(i).tensor(), want[i]) for i in range(len(want)))


@pytest.mark.parametrize("gop,shared", [(2, True), (3, False), (8, False)])
def test_only_clips_whose_frames_follow_a_keyframe(tmp_path, gop, shared):
    """A frame two after its keyframe needs decoder state from an earlier turn: those clips keep a
    torchcodec decoder of their own."""
    clip = encode(tmp_path, f"g{gop}", "-g", str(gop)).read_bytes()
    dec = open_shared(clip)
    assert (dec is not None) == shared
    if dec is not None:
        want = torchcodec_frames(clip)
        assert all(torch.equal(dec.frame_at(i).tensor(), want[i]) for i in range(len(want)))


def test_only_av1(tmp_path):
    """h264 keeps parameter sets in its decoder that a keyframe need not reset, so a context fed
    one clip's packets could decode another's differently: h264 keeps torchcodec decoders."""
    clip = encode(tmp_path, "h264", "-g", "2", "-bf", "0", codec="libx264").read_bytes()
    assert open_shared(clip) is None


def test_a_clip_whose_colour_changes_midway_hands_over_to_torchcodec(tmp_path):
    """Untagged for 10 frames, BT.709 after (two encodes joined without re-encoding): the shared
    path gives the first 10, then the episode's torchcodec decoder takes over at the frame where
    the tag changes; every frame equal to torchcodec's."""
    a = encode(tmp_path, "a", "-g", "2", frames=10)
    b = encode(tmp_path, "b", "-g", "2", "-colorspace", "bt709", "-color_primaries", "bt709",
               "-color_trc", "bt709", "-color_range", "tv", start=0.5, frames=10)
    (tmp_path / "list.txt").write_text(f"file '{a}'\nfile '{b}'\n")
    joined = tmp_path / "joined.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(tmp_path / "list.txt"),
                    "-c", "copy", str(joined)], check=True)
    shared = open_shared(joined.read_bytes())
    assert shared is not None
    shared.frame_at(8)
    with pytest.raises(SharedPathEnded, match="colour matrix 1"):
        shared.frame_at(10)

    cutter = ClipCutter(str(joined), str(joined), 30)
    clip, info = cutter.cut(ClipRequest(0, 0.0, 20))
    cutter.close()
    cam = "observation.images.top"
    episode = LoadedEpisode("shard-000000.tar", ShardEpisodeMeta(0, 0, 20, 0, ("t",), {cam: info}), {}, {cam: clip})
    video = EpisodeVideo(episode)
    got = video.frames(cam, np.arange(20))
    assert not isinstance(video._decoders[cam], SharedClipDecoder)  # torchcodec's, since frame 10
    want = torchcodec_frames(clip)[info.lead_in:info.lead_in + 20]
    assert all(torch.equal(got[i], want[i]) for i in range(20))


def test_a_packet_that_does_not_decode_names_the_episode():
    """Bytes that passed the shard's checksums but are no AV1: the episode's error, as torchcodec's
    failures are; the context that saw them is dropped, and the next clip decodes as ever."""
    cutter = ClipCutter(TOP, TOP, 30)
    clip, info = cutter.cut(ClipRequest(3, 0.4, 60))
    cutter.close()
    shared = open_shared(clip)
    frame = next(i for i in range(info.lead_in + 4, shared.num_frames) if not shared._key[i])
    offset, size = (int(v) for v in shared._places[frame])
    broken = clip[:offset] + b"\xff" * size + clip[offset + size:]
    assert open_shared(broken) is not None  # its keyframes are whole: the shared path takes it
    cam = "observation.images.top"
    episode = LoadedEpisode("shard-000001.tar", ShardEpisodeMeta(1, 3, 60, 137, ("t",), {cam: info}), {}, {cam: broken})
    with pytest.raises(EpisodeError, match=r"shard-000001.tar.*episode 3.*camera 'observation.images.top'.*does not decode"):
        EpisodeVideo(episode).frames(cam, np.arange(60))
    assert torch.equal(open_shared(clip).frame_at(0).tensor(), torchcodec_frames(clip)[0])


def test_clips_of_many_sizes_keep_few_contexts(tmp_path):
    """Each clip size needs a context of its own; a thread keeps only the most recently used, and
    a frame kept decoded from a context let go still comes out right at its episode's next draw."""
    from lerobot_wds.reader import shared_decoder

    clips = [encode(tmp_path, f"w{w}", "-g", "2", "-vf", f"scale={w}:96").read_bytes() for w in range(64, 224, 16)]
    decs = [open_shared(c) for c in clips]
    assert len({d._ctx_key for d in decs}) == len(clips) > shared_decoder.CONTEXTS_PER_THREAD
    wants = [torchcodec_frames(c) for c in clips]
    for i in range(len(wants[0])):
        for dec, want in zip(decs, wants):
            assert torch.equal(dec.frame_at(i).tensor(), want[i]), f"frame {i}"
        assert len(shared_decoder._contexts.by_key) <= shared_decoder.CONTEXTS_PER_THREAD


@pytest.mark.parametrize("width,height", [(424, 240), (200, 96), (130, 66), (336, 96), (640, 480), (128, 66)])
def test_frames_equal_torchcodec_at_widths_swscale_vectorises_differently(tmp_path, width, height):
    """swscale's planar ``gbrp`` got the pixels after the last multiple of 16 of a line wrong (424,
    200 and 130 wide, in both supported stacks); frames of such widths go through ``rgb24``, as
    torchcodec's do. Every pixel equals torchcodec's at every width, written into a batch's row
    without touching the rows around it."""
    from lerobot_wds.reader.video import write_frame

    clip = encode(tmp_path, f"w{width}", "-g", "2", "-vf", f"scale={width}:{height}", frames=6).read_bytes()
    dec, want = open_shared(clip), torchcodec_frames(clip)
    assert dec is not None and want.shape[-2:] == (height, width)
    rows = torch.empty((3, 3, height, width), dtype=torch.uint8)
    for i in range(len(want)):
        frame = dec.frame_at(i)
        assert torch.equal(frame.tensor(), want[i]), f"frame {i}"
        for sentinel in (0x00, 0xA5):
            rows.fill_(sentinel)
            write_frame(frame, rows[1])
            assert torch.equal(rows[1], want[i]), f"frame {i}"
            assert (rows[0] == sentinel).all() and (rows[2] == sentinel).all(), f"frame {i} written outside its row"


@pytest.mark.parametrize("width,height,itself", [(640, 480, True), (320, 240, True), (128, 66, True),
                                                (336, 96, False), (424, 240, False)])
def test_swscale_writes_the_frame_itself_where_its_gbrp_is_exact(tmp_path, width, height, itself):
    """At widths that are multiples of ``GBRP_WIDTHS`` (lerobot's 640 and 320 among them) swscale
    converts straight into the memory given, every pixel torchcodec's and nothing around it
    written; at others the reader copies from ``rgb24`` (the test above)."""
    from lerobot_wds.reader import shared_decoder

    clip = encode(tmp_path, f"w{width}", "-g", "2", "-vf", f"scale={width}:{height}", frames=4).read_bytes()
    dec, want = open_shared(clip), torchcodec_frames(clip)
    rows = torch.empty((3, 3, height, width), dtype=torch.uint8)
    for i in range(len(want)):
        rows.fill_(0xA5)
        assert shared_decoder._write_gbrp(dec.frame_at(i)._frame, rows[1]) == itself
        if itself:
            assert torch.equal(rows[1], want[i]), f"frame {i}"
        assert (rows[0] == 0xA5).all() and (rows[2] == 0xA5).all()


def test_memory_swscale_is_not_given_gets_a_copy():
    """Float32 rows, and uint8 memory that is not one contiguous frame, get the frame PyAV
    converted, copied in: torchcodec's values (float32: ``video.to_float``'s)."""
    from lerobot_wds.reader import shared_decoder
    from lerobot_wds.reader.video import to_float, write_frame

    clip = Path(TOP).read_bytes()
    frame, want = open_shared(clip).frame_at(0), torchcodec_frames(clip)[0]
    floats = torch.empty(want.shape, dtype=torch.float32)
    strided = torch.zeros((want.shape[0], want.shape[1], want.shape[2] * 2), dtype=torch.uint8)[..., ::2]
    for out in (floats, strided):
        assert not shared_decoder._write_gbrp(frame._frame, out)
        write_frame(frame, out)
    assert torch.equal(floats, to_float(want)) and torch.equal(strided, want)


def test_swscale_contexts_of_many_sizes_stay_few(tmp_path):
    """A thread keeps at most ``CONTEXTS_PER_THREAD`` swscale contexts, the most recently used;
    frames of every size still come out as torchcodec's."""
    from lerobot_wds.reader import shared_decoder

    clips = [encode(tmp_path, f"s{h}", "-g", "2", "-vf", f"scale=128:{h}", frames=2).read_bytes()
             for h in range(64, 264, 20)]
    assert len(clips) > shared_decoder.CONTEXTS_PER_THREAD
    for clip in clips + clips[:2]:
        assert torch.equal(open_shared(clip).frame_at(1).tensor(), torchcodec_frames(clip)[1])
        assert len(shared_decoder._contexts.sws.by_key) <= shared_decoder.CONTEXTS_PER_THREAD
    assert [key[1] for key in shared_decoder._contexts.sws.by_key][-2:] == [64, 84]
