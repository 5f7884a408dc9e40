"""Layer 1: MNIST itself. Parse IDX files, find or download a copy, load each split once.

Knows nothing of sequences, files seqbuilder writes, or configs.
"""
