"""Layer 3: looking at built files. Galleries, model-output inspection and ``info`` summaries.

Reads files through :mod:`seqbuilder.store`; never builds anything.
"""
