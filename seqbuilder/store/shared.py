"""Where a batch's float32 images are made: ordinary memory, or shared memory sent as is.

A PyTorch ``DataLoader`` worker hands each batch to the main process in shared memory. When the
``DataLoader``'s ``collate_fn`` is :func:`~seqbuilder.build.loader.share_batch`, it calls
:func:`send_shared` in the worker, and from then on :func:`empty_images` allocates the images
of every batch that worker makes (``SequenceDataset.batch``, ``stream.batches``) straight in
shared memory, as a numpy view of a shared torch tensor; ``share_batch`` recognises such an
array and hands its tensor to the ``DataLoader`` without a copy. Anywhere else (the main process,
a worker under torch's default conversion, a process without torch) images are ordinary numpy
arrays: torch's default conversion would copy a shared one again into new shared memory.
The arrays are numpy ``float32`` either way.

torch is looked up, never imported: a process whose batches go to ``share_batch`` imported it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import numpy.typing as npt

_SEND_SHARED = False  # set in a worker process whose DataLoader collates with share_batch


def send_shared() -> None:
    """Make this process's next batches in shared memory (a ``share_batch`` worker)."""
    global _SEND_SHARED
    _SEND_SHARED = True


def empty_images(shape: tuple[int, ...]) -> npt.NDArray[np.float32] | None:
    """A new float32 array in shared memory for a batch's images, or None to allocate as usual.

    Args:
        shape: ``(n, 28, W)``.
    """
    torch: Any = sys.modules.get("torch") if _SEND_SHARED else None
    if torch is None:
        return None
    storage = torch.UntypedStorage._new_shared(int(np.prod(shape)) * 4)
    tensor = torch.empty(0, dtype=torch.float32).set_(storage, 0, shape)
    images: npt.NDArray[np.float32] = tensor.numpy()
    return images
