"""A disk-backed bank of unit-norm embeddings with ids, searched blockwise by cosine similarity.

The bank is a directory of safetensors blocks ``block-00000.safetensors``, …, each holding up to
``block_size`` rows (tensor ``embeddings``, float16 by default) and their ids (JSON in the file's
metadata). Search is a matrix product per block, so memory is bounded by one block however large
the bank grows; blocks stay resident in memory up to ``max_resident_gb`` and are re-read from disk
beyond that. Blocks of other banks (earlier runs) can be attached read-only, so a new run can be
checked against everything kept before.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ditto_hf.errors import DittoError
from ditto_hf.video import NEW_FILE_MODE

logger = logging.getLogger(__name__)

BLOCK_GLOB = "block-*.safetensors"


#: The safetensors metadata key holding a block's ids and the bank's metadata (one JSON object).
METADATA_KEY = "bank"


def block_metadata(raw: dict[str, str]) -> dict:
    """A block's metadata with its ``ids`` as a list (also reads blocks with one entry per key)."""
    if METADATA_KEY in raw:
        return json.loads(raw[METADATA_KEY])
    return {**raw, "ids": json.loads(raw.get("ids", "[]"))}


def cosine(queries: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` dot products of unit-norm rows, accumulated in float64 and rounded to float32,
    so shapes, batch sizes and thread counts do not change the scores."""
    return (queries.double() @ rows.double().T).float()


@dataclass
class Match:
    """The most similar bank entry for one query (``id`` is ``None`` when the bank is empty)."""

    similarity: float
    id: str | None = None
    bank: str = ""


@dataclass
class _Block:
    """One stored block: its file, ids and (if resident) its embeddings."""

    path: Path
    ids: list[str]
    embeddings: torch.Tensor | None = None

    def load(self) -> torch.Tensor:
        if self.embeddings is not None:
            return self.embeddings
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as handle:
            return handle.get_tensor("embeddings")


@dataclass
class EmbeddingBank:
    """Writable bank in ``directory`` (reloaded if it exists, so a resumed run continues it)."""

    directory: Path
    dim: int | None = None
    block_size: int = 8192
    dtype: torch.dtype = torch.float16
    max_resident_gb: float = 4.0
    metadata: dict[str, str] = field(default_factory=dict)
    blocks: list[_Block] = field(default_factory=list, init=False)
    sources: list[str] = field(default_factory=list, init=False)  # bank directory of each block
    own_ids: set[str] = field(default_factory=set, init=False)
    _resident_bytes: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._attach_blocks(self.directory)
        self.own_ids = {id_ for block in self.blocks for id_ in block.ids}
        self._open_ids: list[str] = []
        self._open_rows: list[torch.Tensor] = []
        if self.blocks and len(self.blocks[-1].ids) < self.block_size:  # reopen the partial last block
            last = self.blocks.pop()
            self.sources.pop()
            self._open_ids, self._open_rows = list(last.ids), list(last.load().unbind(0))
        self._own_full_blocks = len(self.blocks)  # numbers this bank's next block file

    # -- reading ------------------------------------------------------------------------------
    def attach(self, directory: str | os.PathLike) -> int:
        """Add the blocks of another (earlier) bank read-only; returns how many entries it holds."""
        directory = Path(directory)
        if not directory.is_dir() or not any(directory.glob(BLOCK_GLOB)):
            raise DittoError(f"{directory}: not an embedding bank (no {BLOCK_GLOB} files)")
        return self._attach_blocks(directory)

    def _attach_blocks(self, directory: Path) -> int:
        from safetensors import safe_open

        count = 0
        for path in sorted(directory.glob(BLOCK_GLOB)):
            with safe_open(str(path), framework="pt") as handle:
                meta = block_metadata(handle.metadata() or {})
                shape = handle.get_slice("embeddings").get_shape()
            self._check_compatible(path, int(shape[1]), meta)
            block = _Block(path, list(meta["ids"]))
            self._append_block(block, directory)
            count += len(block.ids)
        return count

    def _append_block(self, block: _Block, directory: Path) -> None:
        """Register a stored block, keeping its embeddings in memory while within the budget."""
        size = len(block.ids) * (self.dim or 0) * self.dtype.itemsize
        if self._resident_bytes + size <= self.max_resident_gb * 2**30:
            block.embeddings = block.load()
            self._resident_bytes += size
        else:
            block.embeddings = None
        self.blocks.append(block)
        self.sources.append(str(directory))

    def _check_compatible(self, path: Path, dim: int, meta: dict[str, str]) -> None:
        if self.dim is None:
            self.dim = dim
        if dim != self.dim:
            raise DittoError(f"{path}: embeddings of dimension {dim}, this bank uses {self.dim} (a different model?)")
        for key, value in self.metadata.items():
            if meta.get(key, value) != value:
                logger.warning("%s: %s=%r differs from this run's %r; similarities may not be comparable", path, key, meta.get(key), value)

    def __len__(self) -> int:
        return sum(len(block.ids) for block in self.blocks) + len(self._open_ids)

    def __contains__(self, sample_id: str) -> bool:
        """True if ``sample_id`` was added to this bank (not to an attached one)."""
        return sample_id in self.own_ids

    def nearest(self, queries: torch.Tensor) -> list[Match]:
        """For each unit-norm query row ``(B, D)``, the most similar entry over all blocks."""
        best = torch.full((queries.shape[0],), -float("inf"), device=queries.device)
        where = torch.full((queries.shape[0], 2), -1, dtype=torch.long, device=queries.device)
        for number, embeddings in enumerate(self._block_tensors()):
            similarity, row = cosine(queries, embeddings.to(queries.device)).max(dim=1)
            better = similarity > best
            best = torch.where(better, similarity, best)
            where[better] = torch.stack([torch.full_like(row, number), row], dim=1)[better]
        best = best.clamp(max=1.0)  # float16 storage can round a self-similarity just above 1
        return [
            self._match(float(score), int(number), int(row)) for score, (number, row) in zip(best.tolist(), where.tolist(), strict=True)
        ]

    def _block_tensors(self):
        for block in self.blocks:
            yield block.load()
        if self._open_rows:
            yield torch.stack(self._open_rows)

    def _match(self, similarity: float, number: int, row: int) -> Match:
        if number < 0:
            return Match(similarity=float("nan"))
        if number == len(self.blocks):
            return Match(similarity, self._open_ids[row], str(self.directory))
        return Match(similarity, self.blocks[number].ids[row], self.sources[number])

    # -- writing ------------------------------------------------------------------------------
    def add(self, ids: list[str], embeddings: torch.Tensor) -> None:
        """Append rows; full blocks are written to disk as they fill."""
        if len(ids) != embeddings.shape[0]:
            raise ValueError(f"{len(ids)} ids for {embeddings.shape[0]} embeddings")
        if self.dim is None:
            self.dim = int(embeddings.shape[1])
        for id_, row in zip(ids, embeddings.detach().to("cpu", self.dtype), strict=True):
            self._open_ids.append(id_)
            self._open_rows.append(row)
            self.own_ids.add(id_)
            if len(self._open_ids) == self.block_size:
                self._close_block()

    def flush(self) -> None:
        """Write the partly filled block (atomically), so the bank on disk matches memory."""
        if self._open_ids:
            self._write(self._block_path(self._own_full_blocks), self._open_ids, torch.stack(self._open_rows))

    def _close_block(self) -> None:
        path = self._block_path(self._own_full_blocks)
        embeddings = torch.stack(self._open_rows)
        self._write(path, self._open_ids, embeddings)
        self._own_full_blocks += 1
        self._append_block(_Block(path, self._open_ids, embeddings), self.directory)
        self._open_ids, self._open_rows = [], []

    def _block_path(self, number: int) -> Path:
        return self.directory / f"block-{number:05d}.safetensors"

    def _write(self, path: Path, ids: list[str], embeddings: torch.Tensor) -> None:
        from safetensors.torch import save_file

        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".safetensors", dir=path.parent)
        os.fchmod(handle, NEW_FILE_MODE)
        os.close(handle)
        try:
            # one metadata entry: safetensors writes several in a per-process random order
            header = json.dumps({**self.metadata, "ids": ids}, sort_keys=True)
            save_file({"embeddings": embeddings.contiguous()}, tmp_name, metadata={METADATA_KEY: header})
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
