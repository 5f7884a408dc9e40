"""Bad build configurations, each with the text its error must match.

Shared by test_config.py (rejected when the configuration is loaded) and test_build.py (the
same overrides on the command line: exit 2, one error line, no run directory). ``{tmp}``
stands for a folder holding ``bad.txt`` written by :func:`write_bad_sequence_file`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

BAD_SEQUENCE_FILE = "0965\n\n12x4\n777\n"  # line 3 is not a digit string


def write_bad_sequence_file(folder: Path) -> Path:
    """Write ``folder/bad.txt``, the sequences file the ``file-bad-line`` case reads."""
    path = folder / "bad.txt"
    path.write_text(BAD_SEQUENCE_FILE, encoding="utf-8")
    return path


BAD_CONFIGS = [
    pytest.param(["width=abc"], r"'abc'.*full_key: width\b", id="width-not-int"),
    pytest.param(
        ["fit=stretch"],
        r"'stretch', expected one of \[pad, scale, auto\].*full_key: fit",
        id="fit-unknown",
    ),
    pytest.param(
        ["sequences.kind=bogus"],
        r"'bogus', expected one of \[random, list, file\].*full_key: sequences\.kind",
        id="sequences-kind-unknown",
    ),
    pytest.param(
        ["sequences=bogus"],
        r"Could not find 'sequences/bogus'.*Available options in 'sequences'.*random",
        id="sequences-option-unknown",
    ),
    pytest.param(["colour=red"], r"Key 'colour' not in 'BuildConfig'", id="unknown-key"),
    pytest.param(
        ["spacing.min=9", "spacing.max=4"],
        r"spacing\.min \(9\) must be <= spacing\.max \(4\)",
        id="spacing-min-above-max",
    ),
    pytest.param(
        ["spacing.min=-28"], r"spacing\.min \(-28\) must be >= -27", id="spacing-min-too-low"
    ),
    pytest.param(
        ["splits.train.count=-1"], r"splits\.train\.count \(-1\) must be >= 0", id="count-neg"
    ),
    pytest.param(
        ["splits.test.source=validation"],
        r"'validation', expected one of \[train, test\].*full_key: splits\.test\.source",
        id="split-source-unknown",
    ),
    pytest.param(
        ["storage.compression_level=12"],
        r"storage\.compression_level \(12\) must be in 0\.\.9",
        id="compression-level-12",
    ),
    pytest.param(
        ["storage.compression=brotli"],
        r"'brotli', expected one of \[gzip, lzf, none, zstd, blosc\]"
        r".*full_key: storage\.compression",
        id="compression-unknown",
    ),
    pytest.param(
        ["storage.deflate=isal", "storage.compression_level=4"],
        r"storage\.compression_level \(4\) must be in 0\.\.3 with storage\.deflate=isal",
        id="isal-level-4",
    ),
    pytest.param(
        ["storage.deflate=brotli"],
        r"'brotli', expected one of \[auto, zlib, rle, isal\].*full_key: storage\.deflate",
        id="deflate-unknown",
    ),
    pytest.param(
        ["storage.chunk_samples=0"],
        r"storage\.chunk_samples \(0\) must be >= 1",
        id="chunk-samples-0",
    ),
    pytest.param(["gallery.count=-1"], r"gallery\.count \(-1\) must be >= 0", id="gallery-neg"),
    pytest.param(["workers=-1"], r"workers \(-1\) must be >= 0", id="workers-neg"),
    pytest.param(["seed=-1"], r"seed \(-1\) must be >= 0", id="seed-neg"),
    pytest.param(
        ["sequences.min_length=4", "sequences.max_length=2"],
        r"sequences\.min_length \(4\) must be <= sequences\.max_length \(2\)",
        id="min-length-above-max",
    ),
    pytest.param(
        ["sequences=list", "sequences.values=[0965,'09a5']"],
        r"sequences\.values\[1\] is '09a5', expected a non-empty string of digits",
        id="list-non-digit",
    ),
    pytest.param(
        ["sequences=list", "sequences.values=[]"],
        r"sequences\.values is empty",
        id="list-empty",
    ),
    pytest.param(
        ["sequences=file", "sequences.path={tmp}/missing.txt"],
        r"sequences\.path '.*missing\.txt' cannot be read",
        id="file-missing",
    ),
    pytest.param(
        ["sequences=file", "sequences.path={tmp}/bad.txt"],
        r"sequences\.path '.*bad\.txt' line 3 is '12x4', expected a non-empty string of digits",
        id="file-bad-line",
    ),
    pytest.param(
        ["width=100"],
        r"width \(100\) is too small: 6 digits with gaps up to 6 need at least 198 columns",
        id="width-too-small-for-pad",
    ),
    pytest.param(
        ["sequences=list", "sequences.values=['0965','31415']", "width=150"],
        r"width \(150\) is too small: 5 digits with gaps up to 6 need at least 164 columns",
        id="width-too-small-for-longest-listed",
    ),
    pytest.param(
        ["augment=extreme"],
        r"Could not find 'augment/extreme'.*Available options in 'augment'.*heavy",
        id="augment-option-unknown",
    ),
    pytest.param(
        ["augment.rotate=5"], r"Key 'rotate' not in 'AugmentConfig'", id="augment-key-unknown"
    ),
    pytest.param(
        ["augment=heavy", "augment.elastic.sigma=-1"],
        r"augment\.elastic\.sigma \(-1\.0\) must be in \[0, 16\]",
        id="augment-sigma-negative",
    ),
    pytest.param(
        ["augment.scale=[1.2,0.9]"],
        r"augment\.scale \(\[1\.2, 0\.9\]\) must have min <= max",
        id="augment-scale-min-above-max",
    ),
    pytest.param(
        ["augment.blur=[1]"],
        r"augment\.blur \(\[1\.0\]\) must be \[min, max\]",
        id="augment-blur-one",
    ),
    pytest.param(
        ["augment.baseline=1.5"],
        r"'1\.5'.*full_key: augment\.baseline",
        id="augment-baseline-float",
    ),
    pytest.param(
        ["augment.noise=-0.1"],
        r"augment\.noise \(-0\.1\) must be in \[0, 1\]",
        id="augment-noise-neg",
    ),
]
