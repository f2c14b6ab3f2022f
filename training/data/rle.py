"""COCO RLE masks as SA-V files and our predictions hold them: the one validation every reader uses.

A COCO RLE is ``{"size": [height, width], "counts": ...}``: ``counts`` are run lengths of 0s and 1s,
alternating and starting with 0s, over the mask in column-major order; either a list of integers
(uncompressed) or pycocotools' compressed ASCII string (6-bit groups, offset 48, the third count on
stored as the difference to the count two places before).

pycocotools trusts both forms: counts that add up to less than ``height x width`` decode uninitialised
memory, more write past the mask, and negative counts wrap around. So every reader in ``training/``
(``training.data.sav``, ``training.masklet_io``, ``training.concept_io``) checks each RLE here first:
the size is two positive integers and the counts are non-negative integers adding up to
``height x width``. Errors are ``RLEError`` (a ``ValueError``) whose message starts with ``where``,
which the caller makes name the file, the frame and the object.
"""

from __future__ import annotations

import numpy as np

_OFFSET = 48  # compressed counts: each character is 48 + a 6-bit group
_CONTINUE = 0x20  # another group of the same count follows
_SIGN = 0x10  # in a count's last group: the count is negative
_MAX_GROUPS = 12  # 60 bits: more groups than this is not a run length


class RLEError(ValueError):
    """A malformed COCO RLE. The message starts with the file, frame and object it came from."""


def compressed_counts(counts: bytes) -> np.ndarray:
    """The run lengths of pycocotools' compressed counts string, int64 (``rleFrString`` in pycocotools'
    ``maskApi.c``, without its wrap-around to unsigned). Raises ``ValueError`` on characters outside the
    alphabet or a string that ends inside a count."""
    codes = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - _OFFSET
    if codes.size == 0:
        return np.zeros(0, dtype=np.int64)
    if codes.min() < 0 or codes.max() > 63:
        raise ValueError("compressed counts hold characters outside pycocotools' alphabet ('0'..'o')")
    ends = np.flatnonzero((codes & _CONTINUE) == 0)  # last group of each count
    if ends.size == 0 or ends[-1] != codes.size - 1:
        raise ValueError("compressed counts end in the middle of a count (truncated string)")
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > _MAX_GROUPS:
        raise ValueError(f"a compressed count spans {lengths.max()} characters (at most {_MAX_GROUPS})")
    group = np.arange(codes.size) - np.repeat(starts, lengths)  # position of each character in its count
    values = np.add.reduceat((codes & 0x1F) << (5 * group), starts)
    negative = (codes[ends] & _SIGN) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    # From the fourth count on, a count is stored as its difference to the count two places before.
    restored = values.copy()
    restored[1::2] = np.cumsum(values[1::2])  # 1, 3, 5, ...: every odd count after the second is a delta
    restored[2::2] = np.cumsum(values[2::2])  # 2, 4, 6, ...: every even count after the third is a delta
    return restored


def check_rle(rle: object, where: str, expected_size: tuple[int, int] | None = None) -> dict:
    """Validate one COCO RLE and return it compressed, as pycocotools takes it:
    ``{"size": [height, width], "counts": bytes}``. ``expected_size`` (height, width), when given, must
    equal the RLE's size. Raises ``RLEError`` whose message starts with ``where``."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise RLEError(f"{where}: expected a COCO RLE {{'size': [height, width], 'counts': ...}}")
    size = rle["size"]
    valid_size = (isinstance(size, (list, tuple)) and len(size) == 2
                  and all(isinstance(s, (int, float)) and not isinstance(s, bool) and s == s and s > 0
                          and float(s).is_integer() for s in size))
    if not valid_size:
        raise RLEError(f"{where}: RLE size must be two positive integers [height, width], got {size!r}")
    height, width = (int(s) for s in size)
    if expected_size is not None and (height, width) != tuple(expected_size):
        raise RLEError(f"{where}: RLE size [{height}, {width}] disagrees with the video size "
                       f"[{expected_size[0]}, {expected_size[1]}]")
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c == c and float(c).is_integer()
                   for c in counts):
            raise RLEError(f"{where}: uncompressed RLE counts must be integers")
        runs = np.array([int(c) for c in counts], dtype=np.int64)
    elif isinstance(counts, (str, bytes)):
        try:
            counts = counts.encode("ascii") if isinstance(counts, str) else counts
            runs = compressed_counts(counts)
        except (UnicodeEncodeError, ValueError) as error:
            raise RLEError(f"{where}: unreadable compressed RLE counts ({error})") from None
    else:
        raise RLEError(f"{where}: RLE counts must be a string or a list of integers, got {type(counts).__name__}")
    if runs.size and runs.min() < 0:
        raise RLEError(f"{where}: RLE counts must be non-negative, found {int(runs.min())} "
                       f"(at run {int(np.argmin(runs))})")
    total = int(runs.sum())
    if total != height * width:
        raise RLEError(f"{where}: RLE counts add up to {total} pixels, the mask has {height} x {width} = "
                       f"{height * width}")
    if isinstance(counts, list):
        from pycocotools import mask as mask_utils

        return mask_utils.frPyObjects({"size": [height, width], "counts": [int(c) for c in runs]}, height, width)
    return {"size": [height, width], "counts": counts}
