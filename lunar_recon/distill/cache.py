"""Teacher cache: run the teacher once per pair and store compressed supervision, so
training never runs the teacher (Distill3R).

Layout::

    CACHE/cache.json        format, teacher, data, size, features, rank, shards with sha256 and pairs
    CACHE/basis.pt          low-rank feature bases (when --rank is set)
    CACHE/shard_NNNNN.pt    per pair: pointmaps and confidences (fp16), validity masks
                            (run-length encoded), chosen intermediate tokens (fp16, or
                            low-rank coefficients)

Shards are written atomically and verified by checksum; an interrupted run keeps its
finished shards and redoes the rest.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..fileio import remove_stale_temporaries, write_text_durable
from ..models.checkpoint import CheckpointError, atomic_torch_save, read_checkpoint

FORMAT = "lunar_recon.teacher_cache/1"


def rle_encode(mask: np.ndarray) -> np.ndarray:
    """Run lengths of a flat boolean mask, starting with a run of False (may be 0)."""
    flat = np.asarray(mask, bool).reshape(-1)
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).astype(np.uint32)
    return np.concatenate([[0], runs]).astype(np.uint32) if flat.size and flat[0] else runs


def rle_decode(runs: np.ndarray, shape) -> np.ndarray:
    vals = np.arange(len(runs)) % 2 == 1
    return np.repeat(vals, runs.astype(np.int64)).reshape(shape)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _raw_bytes(entry: dict) -> int:
    """Size of the same supervision stored plainly (float32, bool masks)."""
    n = 0
    for k in ("pts1", "pts2", "conf1", "conf2"):
        n += entry[k].numel() * 4
    n += int(np.prod(entry["shape1"])) + int(np.prod(entry["shape2"]))
    for f in entry.get("features", {}).values():
        n += int(np.prod(f["shape"])) * 4
    return n


def _entry_bytes(entry: dict) -> int:
    n = sum(entry[k].numel() * entry[k].element_size() for k in ("pts1", "pts2", "conf1", "conf2"))
    n += sum(len(entry[k]) * 4 for k in ("mask1", "mask2"))
    for f in entry.get("features", {}).values():
        n += f["data"].numel() * f["data"].element_size()
    return n


def build_cache(
    teacher: torch.nn.Module,
    pairs,
    out: str | Path,
    features: list[str] | None = None,
    rank: int = 0,
    shard_size: int = 16,
    batch_size: int = 4,
    teacher_label: str = "",
    progress=None,
) -> dict:
    """Run ``teacher`` over ``pairs`` (a TrainPairs) and write the cache; returns cache.json."""
    from .data import collate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for p in remove_stale_temporaries(out):
        print(f"removed {p.name}, a temporary of an interrupted run", file=sys.stderr)
    features = list(features or [])
    index_path = out / "cache.json"
    index = None
    if index_path.exists():
        try:
            index = json.loads(index_path.read_text())
            if not isinstance(index, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:  # rebuilt below from the shards' own checks
            print(f"{index_path}: unreadable ({exc}); rebuilding the index, every shard is recomputed", file=sys.stderr)
            index = None
    meta = {
        "format": FORMAT,
        "teacher": teacher_label,
        "teacher_config": teacher.config.to_dict(),
        "size": pairs.size,
        "features": features,
        "rank": rank,
        "pairs": len(pairs),
        "shard_size": shard_size,
    }
    if index is not None and {k: index.get(k) for k in ("teacher", "size", "features", "rank", "shard_size")} != {
        k: meta[k] for k in ("teacher", "size", "features", "rank", "shard_size")
    }:
        raise ValueError(f"{out} holds a cache made with other settings; choose another --out")
    shards = {s["file"]: s for s in (index or {}).get("shards", [])}
    basis = torch.load(out / "basis.pt", weights_only=True) if (out / "basis.pt").exists() else {}
    n_shards = (len(pairs) + shard_size - 1) // shard_size
    device = next(teacher.parameters()).device
    todo = []
    for s in range(n_shards):
        name = f"shard_{s:05d}.pt"
        rec = shards.get(name)
        if rec is not None and (out / name).exists() and _sha256(out / name) == rec["sha256"]:
            continue  # finished earlier and intact
        todo.append(s)
    it = progress(todo) if progress else todo
    for s in it:
        idx = list(range(s * shard_size, min((s + 1) * shard_size, len(pairs))))
        entries = []
        for b0 in range(0, len(idx), batch_size):
            batch = collate([pairs[i] for i in idx[b0 : b0 + batch_size]])
            with torch.inference_mode():
                res1, res2, tokens = teacher(
                    {"img": batch["img1"].to(device)}, {"img": batch["img2"].to(device)}, return_tokens=True
                )
            for j, name in enumerate(batch["name"]):
                entry = {
                    "name": name,
                    "pts1": res1["pts3d"][j].half().cpu(),
                    "pts2": res2["pts3d_in_other_view"][j].half().cpu(),
                    "conf1": res1["conf"][j].half().cpu(),
                    "conf2": res2["conf"][j].half().cpu(),
                    "shape1": list(res1["conf"][j].shape),
                    "shape2": list(res2["conf"][j].shape),
                }
                for k, mk in (("mask1", res1), ("mask2", res2)):
                    pts = mk["pts3d" if k == "mask1" else "pts3d_in_other_view"][j]
                    valid = torch.isfinite(pts).all(-1).cpu().numpy()
                    entry[k] = torch.from_numpy(rle_encode(valid).astype(np.int32))
                feats = {}
                for f in features:
                    tok = tokens[f][j].float().cpu()
                    if rank:
                        if f not in basis:  # principal directions of this layer, from the first pairs seen
                            _, _, Vh = torch.linalg.svd(tok - tok.mean(0), full_matrices=False)
                            basis[f] = {"mean": tok.mean(0), "V": Vh[:rank].T.contiguous()}
                            atomic_torch_save(basis, out / "basis.pt")
                        data = ((tok - basis[f]["mean"]) @ basis[f]["V"]).half()
                    else:
                        data = tok.half()
                    feats[f] = {"data": data, "shape": list(tok.shape)}
                entry["features"] = feats
                entries.append(entry)
        name = f"shard_{s:05d}.pt"
        atomic_torch_save({"format": FORMAT, "entries": entries}, out / name)
        shards[name] = {
            "file": name,
            "sha256": _sha256(out / name),
            "pairs": [e["name"] for e in entries],
            "bytes": sum(_entry_bytes(e) for e in entries),
            "raw_bytes": sum(_raw_bytes(e) for e in entries),
        }
        meta["shards"] = [shards[k] for k in sorted(shards)]
        write_text_durable(index_path, json.dumps(meta, indent=1))
    meta["shards"] = [shards[k] for k in sorted(shards)]
    total = sum(s["bytes"] for s in meta["shards"])
    raw = sum(s["raw_bytes"] for s in meta["shards"])
    meta["bytes_per_pair"] = total / max(len(pairs), 1)
    meta["compression_ratio"] = raw / max(total, 1)
    write_text_durable(index_path, json.dumps(meta, indent=1))
    return meta


class CacheError(ValueError):
    """A teacher cache that cannot be read; the message names the file and the repair."""


class TeacherCache:
    """Read a cache: ``cache[name]`` -> dict of float32 tensors (NaN where the teacher had no point)."""

    def __init__(self, root: str | Path, verify: bool = True):
        self.root = Path(root)
        path = self.root / "cache.json"
        if not path.exists():
            raise FileNotFoundError(f"{self.root}: no cache.json (not a teacher cache)")
        try:
            self.meta = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise CacheError(f"{path}: not a readable cache index ({exc}); re-run lunar-recon cache to rebuild it") from None
        if not isinstance(self.meta, dict):
            raise CacheError(f"{path}: not a cache index; re-run lunar-recon cache to rebuild it")
        if self.meta.get("format") != FORMAT:
            raise CacheError(f"{path}: unknown cache format {self.meta.get('format')}")
        self.where = {}
        for s in self.meta.get("shards", []):
            f = self.root / s["file"]
            if verify and (not f.exists() or _sha256(f) != s["sha256"]):
                raise CacheError(f"{f}: checksum mismatch or missing shard (re-run lunar-recon cache to repair)")
            for name in s["pairs"]:
                self.where[name] = s["file"]
        self.basis = torch.load(self.root / "basis.pt", weights_only=True) if (self.root / "basis.pt").exists() else {}
        self._loaded: dict[str, dict] = {}

    @staticmethod
    def _read_shard(path: Path) -> dict:
        """A shard's contents, or a CacheError naming it (the same safe loader as checkpoints:
        a file holding code is never run)."""
        try:
            data = read_checkpoint(path)
        except CheckpointError as exc:
            raise CacheError(f"{exc}; re-run lunar-recon cache to repair the shard") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), list):
            raise CacheError(f"{path}: not a shard of this cache; re-run lunar-recon cache to repair it")
        return data

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def __len__(self) -> int:
        return len(self.where)

    def __getitem__(self, name: str) -> dict:
        f = self.where[name]
        if f not in self._loaded:
            self._loaded = {f: {e["name"]: e for e in self._read_shard(self.root / f)["entries"]}}
        e = self._loaded[f][name]
        out = {}
        for v in ("1", "2"):
            mask = torch.from_numpy(rle_decode(e[f"mask{v}"].numpy(), e[f"shape{v}"]))
            pts = e[f"pts{v}"].float()
            pts[~mask] = float("nan")
            out[f"pts{v}"], out[f"conf{v}"], out[f"mask{v}"] = pts, e[f"conf{v}"].float(), mask
        feats = {}
        for k, f_ in e.get("features", {}).items():
            data = f_["data"].float()
            if k in self.basis:
                data = data @ self.basis[k]["V"].T + self.basis[k]["mean"]
            feats[k] = data
        out["features"] = feats
        return out
