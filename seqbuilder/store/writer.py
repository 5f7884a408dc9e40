"""Write a split file atomically, in bounded memory, resumably.

:class:`SplitWriter` writes ``<name>.tmp`` beside the target and renames it only once every
sample is in, so a file under its final name is always complete; a checkpoint makes the work
so far durable, so an interrupted build can continue (``resume_from``). The format itself
(names, types, filters, the schema) lives in :mod:`seqbuilder.store.schema`; reading in
:mod:`seqbuilder.store.reader`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from .._atomic import publish, temporary_name
from .._version import __version__
from .chunks import BlockEncoding, ChunkFormat, EncodedBlock, can_encode
from .schema import (
    BOXES,
    CHECKPOINT_ATTR,
    COMPRESSIONS,
    DATASETS,
    DEFAULT_CHUNK_SAMPLES,
    DEFAULT_COMPRESSION_LEVEL,
    FIELD_DTYPES,
    FORMAT_VERSION,
    HEIGHT,
    IMAGES,
    LABELS,
    LENGTHS,
    LIBVER,
    METADATA_CHUNK_ROWS,
    MIN_CACHE_BYTES,
    PAD,
    REQUIRED_ATTRS,
    SOURCE_INDEX,
    STORAGE_DTYPES,
    check_block,
    dataset_filters,
    plain_attr,
)

logger = logging.getLogger(__name__)

# Bytes stored between two starts of the kernel's writeback (see SplitWriter._start_writeback):
# the most the final fsync is left to write, besides what the disk has not caught up with.
WRITEBACK_BYTES = 16 << 20


class SplitWriter:
    """Write one split file atomically, block by block, in bounded memory.

    Blocks of any size are accepted in order; the writer buffers rows so that it always writes
    whole ``images`` chunks (a partial chunk write would re-read and re-compress the chunk).

    Example::

        with SplitWriter(path, count=n, width=w, max_length=l, attrs=attrs) as writer:
            for block in blocks:
                writer.write(*block)

    Args:
        path: The final file name, e.g. ``run_dir / "train.h5"``.
        resume_from: Continue an interrupted ``<name>.tmp`` after this many samples (see
            :func:`~seqbuilder.store.schema.read_checkpoint`); if that file is unsound, start
            afresh (check :attr:`resumed`).
        count: N, the number of samples that will be written (>= 0).
        width: W, the image width (>= 1).
        max_length: L, the most digits of a sample (>= 1).
        dtype: ``"uint8"`` or ``"float32"``, the storage dtype of ``images``.
        compression: ``"gzip"``, ``"lzf"`` or ``"none"``.
        compression_level: gzip level 0..9 (ignored otherwise).
        chunk_samples: Samples per ``images`` chunk (>= 1; capped at ``count``).
        attrs: File attributes; must hold every name of :data:`REQUIRED_ATTRS`. Values are
            ``str``, ``int``, ``float`` or ``bool``.

    Raises:
        ValueError: An argument is out of range, an attribute is missing or contradicts the
            writer's own ``height``/``width``.
        TypeError: An attribute value is not a str, int, float or bool.
        OSError: The temporary file cannot be created (e.g. the folder does not exist).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        count: int,
        width: int,
        max_length: int,
        attrs: Mapping[str, object],
        dtype: str = "uint8",
        compression: str = "gzip",
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
        resume_from: int = 0,
    ) -> None:
        _check_layout(count, width, max_length, chunk_samples)
        _check_choice("dtype", dtype, STORAGE_DTYPES)
        _check_choice("compression", compression, COMPRESSIONS)
        if not 0 <= compression_level <= 9:
            raise ValueError(f"compression_level={compression_level!r}, expected 0..9")
        self.path = Path(path)
        self.tmp_path = temporary_name(self.path)
        self.count, self.width, self.max_length = count, width, max_length
        self._dtype = np.dtype(dtype)
        self._chunk = max(1, min(chunk_samples, count))
        self._compression = compression
        self._level = compression_level
        file_attrs = _file_attrs(attrs, width)
        self._received = 0  # rows handed to write()
        self._written = 0  # rows stored in the file
        self._resumed = 0
        self._pending: list[dict[str, npt.NDArray[Any]]] = []
        self._pending_rows = 0
        self._checkpointed = False
        self._writeback: threading.Thread | None = None
        self._unsynced = 0  # bytes stored since the last writeback started
        self._file: h5py.File | None = None
        if resume_from and self._reopen(resume_from, file_attrs):
            return
        self._file = h5py.File(self.tmp_path, "w", libver=LIBVER, rdcc_nbytes=self._cache_bytes())
        try:
            self._datasets = self._create_datasets(compression, compression_level)
            self._file.attrs.update(file_attrs)
        except BaseException:
            self.discard()
            raise

    @property
    def resumed(self) -> int:
        """Samples already in the file when it was opened (0 unless resuming)."""
        return self._resumed

    def checkpoint(self) -> None:
        """Make everything written so far durable and record it, for ``resume_from``.

        After a checkpoint, an exception inside the ``with`` block, a Ctrl-C or even a
        ``kill -9`` leaves ``<name>.tmp`` holding at least the checkpointed samples.
        """
        if self._file is None:
            return
        self._file.attrs[CHECKPOINT_ATTR] = self._written
        self._file.flush()
        self._checkpointed = True
        self._start_writeback()

    def _reopen(self, resume_from: int, file_attrs: Mapping[str, object]) -> bool:
        """Continue ``<name>.tmp`` after its first ``resume_from`` samples, if it is sound.

        Sound means: it opens, has the expected layout and attributes, and every chunk of the
        kept samples is on disk. Anything else (a file damaged by a crash) starts afresh.
        """
        try:
            file = h5py.File(self.tmp_path, "r+", rdcc_nbytes=self._cache_bytes())
        except OSError as error:
            logger.warning("cannot resume %s (%s); starting it again", self.tmp_path, error)
            return False
        problem = _resume_problem(file, resume_from, self._chunk, file_attrs)
        if problem:
            file.close()
            logger.warning("cannot resume %s (%s); starting it again", self.tmp_path, problem)
            return False
        self._file = file
        self._datasets = {name: file[name] for name in DATASETS}
        self._received = self._written = self._resumed = resume_from
        logger.info("resuming %s after %d samples", self.tmp_path, resume_from)
        return True

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        if issubclass(exc_type, KeyboardInterrupt) and self._written:
            # Ctrl-C lands between HDF5 calls, so the file is consistent: keep all it has.
            with contextlib.suppress(Exception):
                self.checkpoint()
        if self._checkpointed or self._resumed:
            self.keep()
        else:
            self.discard()

    def keep(self) -> None:
        """Close the unfinished file, keeping ``<name>.tmp`` and its last checkpoint."""
        self._abandon()
        logger.warning("kept incomplete %s for resume", self.tmp_path)

    def _abandon(self) -> None:
        """Close the file after a failure without writing anything more to it.

        The file on disk stays as it was at the last flush (the last checkpoint), which is
        what resume relies on. HDF5's close would flush its caches to the disk that may just
        have refused a write; a file HDF5 fails to close stays open inside the library, which
        flushes it again at interpreter exit and crashes there (HDF5 2.0). So the descriptor
        is first pointed at /dev/null, where the closing flush lands harmlessly.
        """
        if self._file is None:
            return
        self._join_writeback()
        file, self._file = self._file, None
        with contextlib.suppress(Exception):
            sink = os.open(os.devnull, os.O_RDWR)
            os.dup2(sink, file.id.get_vfd_handle())
            os.close(sink)
        try:
            file.close()
        except Exception as error:
            logger.warning("closing %s failed: %s", self.tmp_path, error)

    def write(
        self,
        images: npt.NDArray[Any],
        labels: npt.NDArray[Any],
        lengths: npt.NDArray[Any],
        boxes: npt.NDArray[Any],
        source_index: npt.NDArray[Any],
    ) -> None:
        """Append the next block of B samples.

        Args:
            images: ``(B, 28, W)`` in the file's storage dtype (float32 values in [0, 1]).
            labels: ``(B, L)`` integer digits 0..9, padded with -1.
            lengths: ``(B,)`` integer digit counts, 1..L.
            boxes: ``(B, L, 4)`` integer ink boxes, -1 padded.
            source_index: ``(B, L)`` integer MNIST indices, -1 padded.

        Raises:
            ValueError: A shape or value is wrong, or the block goes past ``count``.
            TypeError: ``images`` is not in the storage dtype, or metadata is not integer.
        """
        if self._file is None:
            raise ValueError(f"{self.path}: the writer is closed")
        block = check_block(
            images,
            labels,
            lengths,
            boxes,
            source_index,
            width=self.width,
            max_length=self.max_length,
            dtype=self._dtype,
        )
        rows = len(block[IMAGES])
        if self._received + rows > self.count:
            raise ValueError(
                f"{self.path}: a block of {rows} samples after {self._received} goes past "
                f"count={self.count}"
            )
        self._pending.append(block)
        self._pending_rows += rows
        self._received += rows
        self._flush(final=self._received == self.count)

    @property
    def chunk_samples(self) -> int:
        """Samples per ``images`` chunk (the configured size, capped at ``count``)."""
        return self._chunk

    @property
    def compression(self) -> str:
        """The ``images`` compression: gzip, lzf, none, zstd or blosc."""
        return self._compression

    def fileno(self) -> int | None:
        """The operating system's descriptor of the open ``<name>.tmp``, or None once closed."""
        return None if self._file is None else int(self._file.id.get_vfd_handle())

    @property
    def level(self) -> int:
        """The compression level (gzip's, or zstd's and blosc's)."""
        return self._level

    def block_encoding(self, deflate: str, block_rows: int) -> BlockEncoding | None:
        """How other processes can make this file's chunks for :meth:`write_block`.

        Args:
            deflate: the gzip encoder (``zlib``, ``rle`` or ``isal``), for ``images`` when
                it is gzip and for the metadata, which always is; ``zlib`` makes exactly the
                chunks HDF5 itself would store.
            block_rows: the samples of every block but the last.

        Returns:
            None when a chunk cannot be made outside HDF5 (zstd, blosc, lzf without
            ``python-lzf``) or blocks of ``block_rows`` would cut a chunk in two.
        """
        formats = self._formats(deflate)
        aligned = block_rows >= self.count or all(
            block_rows % chunk.rows == 0 for chunk in formats.values()
        )
        if not (aligned and can_encode(self._compression)):
            return None
        return BlockEncoding(self.width, self.max_length, self._dtype.name, formats)

    def write_block(self, block: EncodedBlock) -> None:
        """Append the next ``block.rows`` samples, made by :func:`~.chunks.encode_block`.

        The chunks are stored as they are (HDF5 direct chunk writes), so compression can run in
        worker processes and this process only moves bytes. The block must start on a chunk
        boundary of every dataset and fill whole chunks, except at the end of the file.

        Raises:
            ValueError: the writer is closed, the file's compression cannot be encoded outside
                HDF5, the block is not chunk-aligned, the number of chunks does not match, or
                it goes past ``count``.
        """
        if self._file is None:
            raise ValueError(f"{self.path}: the writer is closed")
        if not self.accepts_encoded:
            raise ValueError(f"{self.path}: {self._compression} chunks cannot be pre-encoded")
        start, rows = self._received, block.rows
        end = start + rows
        if self._pending_rows or end > self.count:
            raise ValueError(
                f"{self.path}: an encoded block of {rows} samples after {start} goes past "
                f"count={self.count}"
            )
        chunk_rows = {name: self._chunk_rows(name) for name in DATASETS}
        for name, size in chunk_rows.items():
            if start % size or (end < self.count and rows % size):
                raise ValueError(
                    f"{self.path}: an encoded block of {rows} samples after {start} is not "
                    f"aligned to the {name} chunks of {size}"
                )
            if len(block.masks[name]) != -(-rows // size):
                raise ValueError(
                    f"{self.path}: {len(block.masks[name])} {name} chunks for {rows} samples "
                    f"of chunks of {size}"
                )
        for name, size in chunk_rows.items():
            dataset = self._datasets[name].id
            write, rest = dataset.write_direct_chunk, (0,) * (dataset.rank - 1)
            for number, (data, mask) in enumerate(block.chunks(name)):
                write((start + number * size, *rest), data, filter_mask=mask)
        self._received = self._written = end
        self._stored(len(memoryview(block.data).cast("B")))

    @property
    def accepts_encoded(self) -> bool:
        """Whether :meth:`write_block` applies to this file's compression."""
        return can_encode(self._compression)

    def close(self) -> None:
        """Finish the file: check every sample arrived, then move it to its final name.

        Raises:
            ValueError: Fewer than ``count`` samples were written; the temporary file is
                deleted and the final name is left untouched.
            OSError: The file cannot be flushed or renamed; the temporary file is deleted.
        """
        if self._file is None:
            return
        if self._received < self.count:
            self.discard()
            raise ValueError(
                f"{self.path}: only {self._received} of {self.count} samples were written; "
                "the incomplete file was discarded"
            )
        try:
            self._join_writeback()
            if CHECKPOINT_ATTR in self._file.attrs:
                del self._file.attrs[CHECKPOINT_ATTR]
            self._file.close()
            self._file = None
            publish(self.tmp_path, self.path, durable=True)
        except BaseException:
            self.discard()
            raise
        logger.info("wrote %s (%d samples)", self.path, self.count)

    def discard(self) -> None:
        """Close and delete the temporary file; the final name is never touched."""
        self._abandon()
        if self.tmp_path.exists():
            self.tmp_path.unlink()
            logger.warning("discarded incomplete %s", self.tmp_path)

    def _stored(self, size: int) -> None:
        # Keep the kernel writing as the file grows, so the final fsync finds little left.
        self._unsynced += size
        if self._unsynced >= WRITEBACK_BYTES:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Have the kernel start writing the file's dirty pages to disk, without waiting.

        Called at every checkpoint and every :data:`WRITEBACK_BYTES` stored. Otherwise the
        pages pile up in the page cache and the final ``fsync`` (see
        :func:`~seqbuilder._atomic.publish`) writes them all while the build waits: over a
        second for a default build on a 500 MB/s disk. ``POSIX_FADV_DONTNEED`` starts the
        writeback of dirty pages (and drops clean ones, which the build never reads again). A
        thread makes the call, since submitting the writes takes a few milliseconds of
        the kernel's time, which another core can spend; one at a time, joined before the file
        closes.
        """
        advise = getattr(os, "posix_fadvise", None)
        if advise is None or self._file is None:
            return
        if self._writeback is not None and self._writeback.is_alive():
            return
        descriptor = self._file.id.get_vfd_handle()

        def start() -> None:
            with contextlib.suppress(OSError):
                advise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)

        self._writeback = threading.Thread(target=start, name="seqbuilder-writeback", daemon=True)
        self._writeback.start()
        self._unsynced = 0

    def _join_writeback(self) -> None:
        if self._writeback is not None:
            self._writeback.join()
            self._writeback = None

    def _cache_bytes(self) -> int:
        # Enough chunk cache to hold one partly written chunk of every dataset at once.
        per_row = HEIGHT * self.width * self._dtype.itemsize
        metadata_rows = min(self.count, METADATA_CHUNK_ROWS)
        per_meta_row = self.max_length * (1 + 2 * 4 + 4) + 2
        return max(MIN_CACHE_BYTES, 2 * (self._chunk * per_row + metadata_rows * per_meta_row))

    def _chunk_rows(self, name: str) -> int:
        return self._chunk if name == IMAGES else max(1, min(self.count, METADATA_CHUNK_ROWS))

    def _formats(self, deflate: str) -> dict[str, ChunkFormat]:
        # Metadata always uses gzip (see _create_datasets), with the same deflate engine.
        return {
            name: ChunkFormat(self._chunk_rows(name), self._compression, self._level, deflate, 0)
            if name == IMAGES
            else ChunkFormat(self._chunk_rows(name), "gzip", self._level, deflate, PAD)
            for name in DATASETS
        }

    def _create_datasets(self, compression: str, level: int) -> dict[str, h5py.Dataset]:
        assert self._file is not None
        n, length = self.count, self.max_length
        shapes = {
            IMAGES: (n, HEIGHT, self.width),
            LABELS: (n, length),
            LENGTHS: (n,),
            BOXES: (n, length, 4),
            SOURCE_INDEX: (n, length),
        }
        datasets = {}
        for name, shape in shapes.items():
            dtype = self._dtype if name == IMAGES else np.dtype(FIELD_DTYPES[name])
            rows = self._chunk_rows(name)
            # Metadata always uses gzip: it is tiny and must open without any plugin.
            method = compression if name == IMAGES else "gzip"
            datasets[name] = self._file.create_dataset(
                name,
                shape=shape,
                dtype=dtype,
                chunks=(rows, *shape[1:]),
                # HDF5 wants chunks no larger than a fixed dim: an empty split may grow.
                maxshape=(None, *shape[1:]) if n == 0 else None,
                fillvalue=0 if name == IMAGES else PAD,
                **dataset_filters(method, level, dtype.itemsize),
            )
        return datasets

    def _flush(self, *, final: bool) -> None:
        # Write the buffered rows in whole chunks; keep the remainder until it fills one.
        ready = self._pending_rows if final else self._pending_rows // self._chunk * self._chunk
        if ready == 0:
            return
        merged = {
            name: self._pending[0][name]
            if len(self._pending) == 1
            else np.concatenate([block[name] for block in self._pending])
            for name in DATASETS
        }
        start = self._written
        for name, array in merged.items():
            self._datasets[name][start : start + ready] = array[:ready]
        self._written += ready
        self._stored(sum(array[:ready].nbytes for array in merged.values()))
        self._pending_rows -= ready
        self._pending = (
            [{name: array[ready:].copy() for name, array in merged.items()}]
            if self._pending_rows
            else []
        )


def _resume_problem(
    file: h5py.File, rows: int, chunk: int, attrs: Mapping[str, object]
) -> str | None:
    """Say why ``file`` cannot be continued after ``rows`` samples, or None if it can."""
    if any(not isinstance(file.get(name), h5py.Dataset) for name in DATASETS):
        return "a dataset is missing"
    if int(file.attrs.get(CHECKPOINT_ATTR, -1)) < rows:
        return "it holds fewer samples than its checkpoint"
    for key, value in attrs.items():
        # The config text may differ in keys that do not change the data (workers, resume);
        # the build compares configurations key by key before it resumes.
        if key not in ("seqbuilder_version", "config") and plain_attr(file.attrs.get(key)) != value:
            return f"its {key} attribute differs"
    images = file[IMAGES]
    for row in range(0, rows, chunk):
        if images.id.get_chunk_info_by_coord((row, 0, 0)).byte_offset is None:
            return f"the chunk of sample {row} is missing"
    if rows and int(file[LENGTHS][:rows].min()) < 1:
        return "some kept samples have no label"
    return None


def _check_layout(count: int, width: int, max_length: int, chunk_samples: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
        raise ValueError(f"count={count!r}, expected an integer >= 0")
    for name, value in (
        ("width", width),
        ("max_length", max_length),
        ("chunk_samples", chunk_samples),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name}={value!r}, expected an integer >= 1")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        valid = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name}={value!r} is not supported, expected one of {valid}")


def _file_attrs(attrs: Mapping[str, object], width: int) -> dict[str, object]:
    missing = [name for name in REQUIRED_ATTRS if name not in attrs]
    if missing:
        raise ValueError(f"attrs lacks {', '.join(missing)}; a split file records all of them")
    own: dict[str, object] = {
        "format_version": FORMAT_VERSION,
        "seqbuilder_version": __version__,
        "height": HEIGHT,
        "width": width,
    }
    result: dict[str, object] = {}
    for key, value in attrs.items():
        if not isinstance(value, str | int | float | bool | np.generic):
            raise TypeError(
                f"attrs[{key!r}] is a {type(value).__name__}, expected str, int, float or bool"
            )
        if key in own and value != own[key]:
            raise ValueError(f"attrs[{key!r}] is {value!r}, but the file's {key} is {own[key]!r}")
        result[key] = value
    return result | own
