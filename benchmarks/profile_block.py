"""Where one block's time goes: CPU time per image of each step, in a worker and in the parent.

Run from the repository root, with build overrides as ``key=value`` (default: the default
build's configuration)::

    SEQBUILDER_DATA=../shared/mnist python benchmarks/profile_block.py
    SEQBUILDER_DATA=../shared/mnist python benchmarks/profile_block.py storage.compression=none \\
        sequences.min_length=5 sequences.max_length=5 spacing.max=10

Each step runs in isolation on a block of 4096 samples (best of five, CPU time of the process,
so other load on the machine matters little): composing it (``make_block``), encoding every
dataset's chunks (``encode_block``), handing it over (the copy into a shared-memory slot and the
pickled header), and in the parent storing it (``write_block``, 24 blocks) and one checkpoint
with the writeback it starts. docs/performance.md shows these figures beside the code's before
this pipeline.
"""

from __future__ import annotations

import pickle
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from seqbuilder.build.plan import BLOCK_SAMPLES, SplitPlan, make_block, make_recipe
from seqbuilder.build.preflight import compose_config
from seqbuilder.store.chunks import encode_block, resolve_deflate
from seqbuilder.store.writer import SplitWriter

REPEATS = 5
BLOCKS = 24
ATTRS = {
    "config": "profile: true\n",
    "seed": 0,
    "split": "train",
    "source": "train",
    "source_sha256": "-",
    "background": "black",
}


def per_image(step: Callable[[], object]) -> float:
    """The best CPU time of ``step`` over REPEATS runs, in microseconds per image of a block."""
    best = float("inf")
    for _ in range(REPEATS):
        start = time.process_time()
        step()
        best = min(best, time.process_time() - start)
    return best / BLOCK_SAMPLES * 1e6


def main(argv: list[str]) -> int:
    config, _ = compose_config(argv)  # conf/ and the overrides, as seqbuilder build composes
    storage = config.storage
    recipe = make_recipe(config)
    plan = SplitPlan("train", BLOCKS * BLOCK_SAMPLES, "train")
    block = make_block(recipe, plan, 0)  # loads MNIST outside the timing
    rows: dict[str, float] = {}
    rows["worker: compose the block (make_block)"] = per_image(lambda: make_block(recipe, plan, 1))
    with tempfile.TemporaryDirectory() as folder:
        writer = SplitWriter(
            Path(folder) / "train.h5",
            count=plan.count,
            width=config.width,
            max_length=recipe.max_length,
            attrs=ATTRS,
            compression=storage.compression.value,
            compression_level=storage.compression_level,
            chunk_samples=storage.chunk_samples,
        )
        deflate = resolve_deflate(storage.deflate.value, storage.compression_level)
        encoding = writer.block_encoding(deflate, BLOCK_SAMPLES)
        if encoding is None:
            raise SystemExit("these storage settings are not encoded by the workers")
        rows["worker: encode every dataset's chunks"] = per_image(
            lambda: encode_block(encoding, *block)
        )
        encoded = encode_block(encoding, *block)
        slot = memoryview(bytearray(len(encoded.data)))
        header = encoded._replace(data=None)

        def hand_over() -> None:
            slot[:] = encoded.data
            pickle.dumps(header)

        rows["worker: hand it over (shared slot, pickled header)"] = per_image(hand_over)
        rows["parent: receive it (unpickle the header)"] = per_image(
            lambda: pickle.loads(pickle.dumps(header))
        )
        start = time.process_time()
        for _ in range(BLOCKS):
            writer.write_block(encoded)
        stored = time.process_time() - start
        rows["parent: store it (direct chunk writes)"] = stored / plan.count * 1e6
        start = time.process_time()
        writer.checkpoint()
        writer.close()  # waits for the writeback the checkpoint started
        rows["parent: one checkpoint and the close, per 24 blocks"] = (
            (time.process_time() - start) / plan.count * 1e6
        )
    print(f"CPU us per image, {' '.join(argv) or 'the default configuration'} (deflate={deflate})")
    for label, micros in rows.items():
        print(f"  {label:<56} {micros:7.2f}")
    print(f"  {'total':<56} {sum(rows.values()):7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
