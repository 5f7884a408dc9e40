"""Layer 3: building datasets. The Hydra app, its config schema, the plan of seeded blocks,
the worker pool, the run lock, resume and the dataset card.

Draws from ``image``, writes through ``store``, renders galleries with ``view``.
"""
