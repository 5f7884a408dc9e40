"""Layer 3: building datasets, and feeding training. The Hydra app, its config schema, the plan
of seeded blocks, the worker pool, the run lock, resume and the dataset card; the stream of a
build's samples made in memory (``SequenceStream``) and the chunk-aware shuffle of a built file
(``ChunkShuffle``).

Draws from ``image``, writes through ``store``, renders galleries with ``view``.
"""
