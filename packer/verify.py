"""``inspect`` and ``verify`` of a packed dataset (local or any fsspec URL).

``verify`` trusts nothing but the manifest: per shard it checks size and sha256, that the tar's
members sit at the manifest's byte ranges, and per episode that ``meta.msgpack`` and
``frames.arrow`` agree with the manifest (frame counts, contiguous ``frame_index``) and that each
clip holds ``lead_in + length`` frames and decodes one frame (torchcodec). It returns a list of
problems, each naming the shard, episode and member, instead of stopping at the first.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from typing import Any, Mapping

import fsspec
import msgpack
import pyarrow as pa

from ..format import MANIFEST_NAME, CLIP_SUFFIX, ShardEpisodeMeta, Manifest, episode_key


def _open(out: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str, Manifest]:
    fs, root = fsspec.core.url_to_fs(str(out), **dict(storage_options or {}))
    root = root.rstrip("/")
    try:
        text = fs.cat_file(f"{root}/{MANIFEST_NAME}")
    except FileNotFoundError:
        raise FileNotFoundError(f"{out}/{MANIFEST_NAME}: missing; not a packed dataset, or packing did not finish") from None
    return fs, root, Manifest.from_json(text, where=f"{out}/{MANIFEST_NAME}")


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


def _check_clip(data: bytes, info: Any, length: int, where: str) -> list[str]:
    from torchcodec.decoders import VideoDecoder

    try:
        dec = VideoDecoder(data, seek_mode="exact")
        n = len(dec)
        frame = dec[info.lead_in]
    except Exception as e:  # torchcodec raises RuntimeError/ValueError on bad streams
        return [f"{where}: does not decode ({e})"]
    problems = []
    if n != info.num_frames or n < info.lead_in + length:
        problems.append(f"{where}: {n} frames, meta says num_frames {info.num_frames}, needs lead_in+length {info.lead_in + length}")
    if tuple(frame.shape[1:]) != (info.height, info.width):
        problems.append(f"{where}: frame is {tuple(frame.shape)}, meta says {info.height}x{info.width}")
    return problems


def verify(out: str, storage_options: Mapping[str, Any] | None = None, decode: bool = True) -> list[str]:
    """Every problem found in the packed dataset at ``out``; an empty list means it verified."""
    fs, root, m = _open(out, storage_options)
    problems: list[str] = []
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
            for suffix, ref in e.members.items():
                if found.get(f"{key}.{suffix}") != (ref.offset, ref.size):
                    problems.append(f"{s.name}: {key}.{suffix} not at the manifest's byte range {ref}")
            blob = {k: data[r.offset : r.offset + r.size] for k, r in e.members.items()}
            where = f"{s.name}: {key}"
            try:
                meta = ShardEpisodeMeta.from_dict(msgpack.unpackb(blob["meta.msgpack"], raw=False), where)
                table = pa.ipc.open_file(blob["frames.arrow"]).read_all()
            except Exception as exc:  # any decoding failure is a finding, not a crash
                problems.append(f"{where}: meta/frames unreadable ({exc})")
                continue
            if meta.length != e.length or table.num_rows != e.length:
                problems.append(f"{where}: length {e.length} in manifest, {meta.length} in meta, {table.num_rows} rows")
            elif table.column("frame_index").to_pylist() != list(range(e.length)):
                problems.append(f"{where}.frames.arrow: frame_index is not 0..{e.length - 1}")
            for cam, info in meta.clips.items():
                member = f"{cam}{CLIP_SUFFIX}"
                if member not in blob:
                    problems.append(f"{where}.{member}: missing")
                elif decode:
                    problems += _check_clip(blob[member], info, e.length, f"{where}.{member}")
    return problems
