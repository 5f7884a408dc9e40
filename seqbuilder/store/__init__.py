"""Layer 2: the HDF5 files. Their schema, writing them atomically, reading and merging them.

Never draws a random number and knows nothing of MNIST or configs beyond the YAML text it
stores.
"""
