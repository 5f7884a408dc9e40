"""Layer 2: images. Compose digit sequences from MNIST digits, one or a block at a time.

Pure numpy: never opens a file. Every random choice arrives as an ``rng`` argument.
"""
