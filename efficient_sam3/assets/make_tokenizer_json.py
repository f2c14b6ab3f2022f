"""Build efficient_sam3/assets/tokenizer.json from open_clip's bpe_simple_vocab_16e6.txt.gz.

Run from the repository root (``--check`` compares with the packaged file and writes nothing)::

    python efficient_sam3/assets/make_tokenizer_json.py [--check]

The vocabulary is built exactly as CLIP's ``simple_tokenizer.py`` builds it from the merge file
(MIT, see LICENSE-open_clip.txt next to it): the 256 byte-level characters in ``bytes_to_unicode``
order, the same with ``</w>``, one token per merge of lines 1..48894, then ``<|startoftext|>`` and
``<|endoftext|>``: ids 0..49407. The pipeline around it is ``efficient_sam3.tokenizer.build_backend``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
MERGES_GZ = ASSETS / "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2  # CLIP: merges = lines[1 : 49152 - 256 - 2 + 1]


def bytes_to_unicode() -> list[str]:
    """CLIP/GPT-2's printable character for each byte, in CLIP's vocabulary order."""
    byte_values = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in byte_values]
    return [chr(byte) for byte in byte_values] + [chr(256 + n) for n in range(len(others))]


def clip_vocabulary(merges_gz: bytes) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(token -> id, merges) of CLIP's simple_tokenizer for the gzipped merge file."""
    lines = gzip.decompress(merges_gz).decode("utf-8").split("\n")
    merges = [(first, second) for first, second in (line.split() for line in lines[1 : NUM_MERGES + 1])]
    base = bytes_to_unicode()
    tokens = [*base, *(char + "</w>" for char in base), *(a + b for a, b in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return dict(zip(tokens, range(len(tokens)))), merges


def tokenizer_json() -> str:
    """The packaged tokenizer.json's text, built from MERGES_GZ."""
    from efficient_sam3.tokenizer import build_backend

    encoder, merges = clip_vocabulary(MERGES_GZ.read_bytes())
    return build_backend(encoder, merges).to_str() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the packaged file, write nothing")
    args = parser.parse_args()
    sys.path.insert(0, str(ASSETS.parents[1]))
    out = ASSETS / "tokenizer.json"
    text = tokenizer_json()
    if args.check:
        same = json.loads(out.read_text(encoding="utf-8")) == json.loads(text)
        print(f"{out}: {'up to date' if same else 'DIFFERENT from what the merge file gives'}")
        return 0 if same else 1
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
