"""Hand batches to a PyTorch ``DataLoader``'s main process cheaply: :func:`share_batch`.

A ``DataLoader`` worker sends each batch to the main process through shared memory. With
``batch_size=None`` it first turns the numpy arrays a worker made into tensors
(``torch.as_tensor``, no copy), then its pickler moves each tensor's storage into a fresh
shared-memory segment (``_share_fd_cpu_``): a copy that, for a batch of 256 x 28 x 200 float32
(5.7 MB), took about twice as long as allocating the segment and writing into it directly on
the development machine (12 ms against 6 ms under load), where every fresh page costs a fault.
:func:`share_batch`, given as ``collate_fn``, allocates the shared segment itself and copies
each array into it once; from its first call on, the worker makes the images of its next
batches straight in shared memory (:mod:`seqbuilder.store.shared`), and ``share_batch`` sends
those without any copy. The pickler then only sends a handle.

Usage::

    loader = DataLoader(ds, sampler=ChunkShuffle(ds, batch_size=256), batch_size=None,
                        num_workers=2, collate_fn=share_batch)

torch is looked up, never imported: a process that runs a ``DataLoader`` has imported it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ..store.shared import send_shared


def share_batch(batch: Any) -> Any:
    """Turn a batch's numpy arrays into torch tensors, in shared memory inside a worker.

    A drop-in for ``torch.utils.data.default_convert``, the ``collate_fn`` a ``DataLoader``
    uses with ``batch_size=None``: the same structure and values come out (a tuple becomes a
    list, as there), but in a worker process each numpy array is copied once into a
    shared-memory tensor that the worker sends to the main process without another copy, and
    the images that ``ds.batch`` or ``stream.batches`` make in that worker after its first call
    are in shared memory already and are sent with no copy at all. Outside a worker
    (``num_workers=0``) it is ``default_convert``.

    Args:
        batch: what the dataset gave: e.g. ``(images, labels, lengths)`` from
            :meth:`~seqbuilder.store.reader.SequenceDataset.batch` or ``stream.batches(n)``.

    Returns:
        The batch with every numeric numpy array a ``torch.Tensor`` of the same dtype, shape
        and values.

    Raises:
        RuntimeError: torch has not been imported in this process (no DataLoader runs).
    """
    torch: Any = sys.modules.get("torch")
    if torch is None or "torch.utils.data" not in sys.modules:
        raise RuntimeError("share_batch is a DataLoader's collate_fn: import torch first")
    data = torch.utils.data
    if data.get_worker_info() is None:
        return data.default_convert(batch)
    send_shared()  # this worker's next batches are made in shared memory
    return _shared(torch, data, batch)


def _shared(torch: Any, data: Any, batch: Any) -> Any:
    if isinstance(batch, np.ndarray) and batch.dtype.kind in "biuf":
        if _whole_view(torch, batch):  # made in shared memory (empty_images): send as is
            return batch.base
        # torch's own default_collate allocates its output the same way (_new_shared)
        source = torch.from_numpy(np.ascontiguousarray(batch))
        storage = torch.UntypedStorage._new_shared(source.numel() * source.element_size())
        return torch.empty(0, dtype=source.dtype).set_(storage, 0, source.shape).copy_(source)
    if isinstance(batch, tuple) and not hasattr(batch, "_fields"):
        return [_shared(torch, data, item) for item in batch]
    if isinstance(batch, list):
        return [_shared(torch, data, item) for item in batch]
    if isinstance(batch, Mapping):
        return {key: _shared(torch, data, value) for key, value in batch.items()}
    return data.default_convert(batch)


def _whole_view(torch: Any, array: npt.NDArray[Any]) -> bool:
    """Whether ``array`` is exactly a shared tensor seen as numpy (``tensor.numpy()``)."""
    base = array.base
    return (
        isinstance(base, torch.Tensor)
        and base.is_shared()
        and base.data_ptr() == array.__array_interface__["data"][0]
        and tuple(base.shape) == array.shape
        and base.is_contiguous()
        and array.flags.c_contiguous
        and base.numpy().dtype == array.dtype
    )
