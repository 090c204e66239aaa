"""The frozen towers' features, computed once and cached on disk (`tune_towers = false`).

    cached_features(items, path, compute)   the features of `items` from the cache file, or
                                            computed by `compute` and stored there
    cache_file(folder, split, model_hash, items)
                                            the file for a set: keyed by the base model and
                                            by every item's id, text and image (size and
                                            modification time for a file)

Participants sharing a cache folder (the demo's) take turns per entry under an advisory
lock, so that a set they all need (the shared test set) is computed once, not once each.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from accord.participant.training.items import Item

Features = tuple[torch.Tensor, torch.Tensor]
"""(text features, image features), one row per item."""


def cache_file(folder: Path, split: str, model_hash: str, items: Sequence[Item]) -> Path:
    """Where the features of `items` under the base model `model_hash` are cached."""
    digest = hashlib.sha256(model_hash.encode())
    for item in items:
        digest.update(json.dumps([item.id, item.text, str(item.image)]).encode())
        if isinstance(item.image, Path):
            stat = item.image.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        else:
            digest.update(np.ascontiguousarray(item.image).tobytes())
    return folder / f"{split}-{digest.hexdigest()[:40]}.safetensors"


def cached_features(
    items: Sequence[Item], cache: Path, compute: Callable[[Sequence[Item]], Features]
) -> Features:
    """The features of `items`: read from `cache`, or computed once and written there."""
    with _exclusive(cache.with_name(cache.name + ".lock")):
        if cache.exists():
            stored = load_file(str(cache))
            return stored["text"], stored["image"]
        text_all, image_all = compute(items)
        staging = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        save_file({"text": text_all.contiguous(), "image": image_all.contiguous()}, str(staging))
        staging.replace(cache)
    return text_all, image_all


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an advisory lock on `lock_file` (created if needed) for the block's duration."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
