"""``inspect`` and ``verify`` of a packed dataset (local or any fsspec URL).

``verify`` trusts nothing but the manifest, which is itself checked on load (names, byte ranges
inside each shard, each episode once): per shard it checks size and sha256 and that the tar's
members sit at the manifest's byte ranges; per episode that its members are exactly those of the
dataset's cameras, that it parses through the reader's own parser (member checksums, metadata
and frame table against the manifest, contiguous ``frame_index``), and that each clip holds
``lead_in + length`` frames and decodes (one frame, or every frame with ``full``). It returns a
list of problems, each naming the shard, episode and member, instead of stopping at the first.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from typing import Any, Mapping

import fsspec
from ..format import FRAMES_MEMBER, META_MEMBER, FormatError, Manifest, clip_member, episode_key, frame_columns


def _open(out: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str, Manifest]:
    """The filesystem, root and manifest of the pack at ``out``, the manifest read by the reader's
    own ``Store.read_manifest`` (same checks, same errors)."""
    from ..reader.storage import Store

    fs, root = fsspec.core.url_to_fs(str(out), **dict(storage_options or {}))
    return fs, root.rstrip("/"), Store(out, storage_options).read_manifest()


def inspect(out: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """A short human summary: episodes, frames, shards and sizes, cameras and codecs."""
    _, _, m = _open(out, storage_options)
    sizes = [s.bytes for s in m.shards]
    src = m.source.get("repo_id") or m.source.get("path")
    lines = [
        f"dataset   {out}",
        f"source    {src} (revision {m.source.get('revision')}, {m.source.get('codebase_version')})",
        f"episodes  {m.total_episodes}   frames {m.total_frames}   fps {m.fps}   tasks {len(m.tasks)}",
        f"shards    {len(m.shards)}   total {sum(sizes) / 1e6:.2f} MB   "
        f"min {min(sizes, default=0) / 1e6:.2f} / max {max(sizes, default=0) / 1e6:.2f} MB",
    ]
    for key, v in m.videos.items():
        lines.append(f"camera    {key}: {v.get('codec')} {v.get('pix_fmt')} {v.get('height')}x{v.get('width')} (HxW)"
                     f"{' (re-encoded)' if v.get('reencoded') else ''}")
    for key in m.image_keys:
        lines.append(f"camera    {key}: image (encoded bytes in frames.arrow)")
    return "\n".join(lines)


def _check_clip(data: bytes, info: Any, length: int, where: str, full: bool,
                dataset: tuple[int, int] | None) -> list[str]:
    from ..reader.torchcodec_import import video_decoder_class

    try:
        dec = video_decoder_class()(data, seek_mode="exact")
        n = len(dec)
        # --full: every frame the episode uses, one at a time, each checked for its size (a clip may
        # change size midway, as the reader checks too); otherwise the first.
        sizes = {tuple(dec.get_frame_at(i).data.shape[1:])
                 for i in range(info.lead_in, min(n, info.lead_in + length) if full else info.lead_in + 1)}
    except Exception as e:  # torchcodec raises RuntimeError/ValueError/IndexError on bad streams
        return [f"{where}: does not decode ({e})"]
    problems = []
    if n != info.num_frames or n < info.lead_in + length:
        problems.append(f"{where}: {n} frames, meta says num_frames {info.num_frames}, needs lead_in+length {info.lead_in + length}")
    for height, width in sorted(sizes):
        wrong = info.size_mismatch((width, height), dataset)
        if wrong:
            problems.append(f"{where}: {wrong}")
    return problems


def verify(out: str, storage_options: Mapping[str, Any] | None = None, decode: bool = True,
           full: bool = False) -> list[str]:
    """Every problem found in the packed dataset at ``out``; an empty list means it verified.

    Reads each episode through the reader's own parser (``reader/episodes.py``: member checksums,
    metadata, frame table, clips), so what passes here is what training reads. ``decode`` opens
    each clip and decodes its first frame; ``full`` decodes every frame of every clip."""
    from ..reader.episodes import EpisodeError, parse_episode, split_members

    fs, root, m = _open(out, storage_options)
    problems: list[str] = []
    members = {FRAMES_MEMBER, META_MEMBER} | {clip_member(k) for k in m.video_keys}
    sizes = m.video_sizes
    columns = frame_columns(m.features)
    for s in m.shards:
        path = f"{root}/{s.name}"
        try:
            data = fs.cat_file(path)
        except FileNotFoundError:
            problems.append(f"{s.name}: missing")
            continue
        if len(data) != s.bytes or hashlib.sha256(data).hexdigest() != s.sha256:
            problems.append(f"{s.name}: size/sha256 differ from the manifest (damaged or replaced)")
            continue
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            found = {t.name: (t.offset_data, t.size) for t in tar.getmembers()}
        for e in s.episodes:
            key = episode_key(e.episode_index)
            where = f"{s.name}: {key}"
            if set(e.members) != members:
                problems.append(f"{where}: members {sorted(e.members)}, the dataset's cameras need {sorted(members)}")
                continue
            for suffix, ref in e.members.items():
                if found.get(f"{key}.{suffix}") != (ref.offset, ref.size):
                    problems.append(f"{s.name}: {key}.{suffix} not at the manifest's byte range {ref}")
            start, end = e.span
            try:
                ep = parse_episode(split_members(data[start:end], e, s.name), e, s.name, m.video_keys, m.image_keys,
                                   columns)
            except (EpisodeError, FormatError) as exc:
                problems.append(str(exc))
                continue
            if set(ep.meta.clips) != set(m.video_keys):
                problems.append(f"{where}: clip info for {sorted(ep.meta.clips)}, cameras are {sorted(m.video_keys)}")
                continue
            if decode or full:
                for cam, info in ep.meta.clips.items():
                    problems += _check_clip(ep.clips[cam], info, e.length, f"{where}.{clip_member(cam)}", full,
                                            sizes.get(cam))
    return problems
