"""Offline CLIP byte-level BPE tokenizer (torch + standard library only).

Follows OpenAI CLIP's ``simple_tokenizer.py`` (as copied into open_clip, MIT licence, see
``assets/LICENSE-open_clip.txt``); the packaged ``assets/bpe_simple_vocab_16e6.txt.gz`` is
open_clip's merge list.

Text cleaning is CLIP's minus ftfy: NFC normalisation, ``html.unescape`` twice, whitespace
collapse, lower case. ftfy is not available, so its other repairs do NOT happen here: mojibake
(``cafÃ©``), curly quotes (``’`` stays ``’`` instead of becoming ``'``), latin ligatures
(``ﬁ``), full-width characters and terminal escapes / control characters. HuggingFace's
``CLIPTokenizer`` (the SAM3 teacher's tokenizer) does none of these either, but it also does not
``html.unescape``: ``"&amp;"`` gives ``&`` here and the literal ``&amp;`` there.

CLIP splits words with the ``regex`` module's ``[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+``. The
stdlib ``re`` has no ``\\p{..}``; here ``[^\\W\\d_]+`` matches letters plus non-decimal numerics
(``²``, ``½``, ``Ⅻ``), and those numerics are split back out as one-character number pieces, so
the split equals CLIP's wherever Python's Unicode tables agree with ``regex``'s (``\\w`` is exactly
letters, numbers and ``_``).
"""

from __future__ import annotations

import gzip
import html
import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import torch

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
DEFAULT_MODEL_MAX_LENGTH = 77  # CLIP's text context length
END_OF_WORD = "</w>"
_PACKAGED_BPE = "bpe_simple_vocab_16e6.txt.gz"
_NUM_PACKAGED_MERGES = 49152 - 256 - 2  # CLIP: merges = lines[1 : 49152 - 256 - 2 + 1]
_WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\w\s]|_)+"""


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2 reversible map from each of the 256 bytes to a printable unicode character."""
    byte_values = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    code_points = byte_values[:]
    extra = 0
    for byte in range(256):
        if byte not in byte_values:
            byte_values.append(byte)
            code_points.append(256 + extra)
            extra += 1
    return dict(zip(byte_values, (chr(c) for c in code_points)))


def clean_text(text: str) -> str:
    """CLIP's basic + whitespace clean and lower case, without ftfy (see module docstring)."""
    text = unicodedata.normalize("NFC", text)  # ftfy.fix_text ends with NFC
    text = html.unescape(html.unescape(text))
    return " ".join(text.split()).lower()


@dataclass(frozen=True)
class BpeVocabulary:
    """Everything a ClipTokenizer needs: token table, ordered merges and special token names.

    encoder: token string -> id. merges: BPE merges, highest priority first.
    model_max_length: longest sequence (with bos/eos) the text encoder accepts.
    """

    encoder: dict[str, int]
    merges: list[tuple[str, str]]
    bos_token: str = BOS_TOKEN
    eos_token: str = EOS_TOKEN
    pad_token: str = EOS_TOKEN
    model_max_length: int = DEFAULT_MODEL_MAX_LENGTH

    @classmethod
    def packaged(cls) -> BpeVocabulary:
        """open_clip's ``bpe_simple_vocab_16e6`` shipped in efficient_sam3/assets (49408 tokens)."""
        data = resources.files("efficient_sam3").joinpath("assets", _PACKAGED_BPE).read_bytes()
        lines = gzip.decompress(data).decode("utf-8").split("\n")
        merges = [(a, b) for a, b in (ln.split() for ln in lines[1 : _NUM_PACKAGED_MERGES + 1])]
        base = list(bytes_to_unicode().values())
        tokens = base + [t + END_OF_WORD for t in base] + ["".join(m) for m in merges]
        tokens += [BOS_TOKEN, EOS_TOKEN]
        return cls(encoder=dict(zip(tokens, range(len(tokens)))), merges=merges)


@dataclass(frozen=True)
class _Tables:
    """Lookup tables built once from a BpeVocabulary."""

    encoder: dict[str, int]
    decoder: dict[int, str]
    byte_encoder: dict[int, str]
    byte_decoder: dict[str, int]
    bpe_ranks: dict[tuple[str, str], int]
    pattern: re.Pattern[str]
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int
    special_ids: frozenset[int]
    model_max_length: int


class ClipTokenizer:
    """CLIP BPE tokenizer producing SAM3's fixed-length ``input_ids`` / ``attention_mask``.

    ``ClipTokenizer.default()`` uses the packaged vocabulary (49408 tokens, bos/sot 49406,
    eos/eot 49407, pad 49407) and reads it on first use. ``from_pretrained(dir)`` reads a
    transformers tokenizer directory (vocab.json + merges.txt, or tokenizer.json).
    """

    def __init__(self, vocabulary: BpeVocabulary | None = None) -> None:
        self._vocabulary = vocabulary  # None: packaged vocabulary, loaded on first use
        self._tables: _Tables | None = None
        self._bpe_cache: dict[str, str] = {}
        if vocabulary is not None:
            self._load()  # validate a caller's vocabulary now, not at first encode

    @classmethod
    def default(cls) -> ClipTokenizer:
        """Packaged open_clip vocabulary; fully offline, loaded lazily (~0.2 s)."""
        return cls()

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ClipTokenizer:
        """Tokenizer files of a transformers checkpoint directory (e.g. facebook/sam3)."""
        directory = Path(directory)
        vocabulary = read_tokenizer_dir(directory)
        try:
            return cls(vocabulary)
        except ValueError as error:
            raise ValueError(f"tokenizer files in {directory} are malformed: {error}") from error

    def _load(self) -> _Tables:
        if self._tables is None:
            vocabulary = self._vocabulary or BpeVocabulary.packaged()
            self._tables = _build_tables(vocabulary)
            self._bpe_cache = {t: t for t in (vocabulary.bos_token, vocabulary.eos_token)}
        return self._tables

    @property
    def vocab_size(self) -> int:
        return max(self._load().decoder) + 1

    @property
    def bos_token_id(self) -> int:
        return self._load().bos_token_id

    @property
    def eos_token_id(self) -> int:
        return self._load().eos_token_id

    @property
    def pad_token_id(self) -> int:
        return self._load().pad_token_id

    @property
    def model_max_length(self) -> int:
        return self._load().model_max_length

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without bos/eos."""
        if not isinstance(text, str):
            raise ValueError(f"ClipTokenizer.encode expects a str, got {type(text).__name__}")
        tables = self._load()
        ids: list[int] = []
        for word in _words(tables.pattern, clean_text(text)):
            word = "".join(tables.byte_encoder[b] for b in word.encode("utf-8"))
            ids.extend(tables.encoder[piece] for piece in self._bpe(word).split(" "))
        return ids

    def __call__(
        self, texts: Sequence[str], max_length: int = 32, pad_token_id: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch of prompts -> (input_ids, attention_mask), both int64 ``[B, max_length]``.

        Each row is ``<sot> tokens <eot>`` then ``pad_token_id`` (None: the vocabulary's pad token;
        SAM3's original tokenizer pads with 0); attention_mask is 1 on the real tokens (sot and eot
        included). Too-long prompts keep sot, their first ``max_length - 2`` tokens, and end with eot.
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise ValueError(
                f"ClipTokenizer expects a list of str prompts, got {type(texts).__name__}"
            )
        if not 2 <= max_length <= self.model_max_length:
            raise ValueError(
                f"max_length must be in [2, {self.model_max_length}] (model_max_length), "
                f"got {max_length}"
            )
        tables = self._load()
        pad = tables.pad_token_id if pad_token_id is None else pad_token_id
        input_ids = torch.full((len(texts), max_length), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(texts), max_length), dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [tables.bos_token_id, *self.encode(text)[: max_length - 2], tables.eos_token_id]
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return input_ids, attention_mask

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        """Text of token ids (CLIP's decode: words separated by single spaces)."""
        tables = self._load()
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        pieces = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id not in tables.decoder:
                raise ValueError(f"token id {token_id} is not in the vocabulary")
            if skip_special_tokens and token_id in tables.special_ids:
                continue
            pieces.append(tables.decoder[token_id])
        raw = bytearray(tables.byte_decoder[c] for c in "".join(pieces))
        return raw.decode("utf-8", errors="replace").replace(END_OF_WORD, " ").strip()

    def _bpe(self, word: str) -> str:
        """Space-separated BPE pieces of one byte-encoded word (CLIP's ``bpe``), cached."""
        cached = self._bpe_cache.get(word)
        if cached is not None:
            return cached
        ranks = self._load().bpe_ranks
        symbols = [*word[:-1], word[-1] + END_OF_WORD]
        while len(symbols) > 1:
            pairs = set(zip(symbols[:-1], symbols[1:]))
            best = min(pairs, key=lambda pair: ranks.get(pair, _NO_MERGE))
            if best not in ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        result = " ".join(symbols)
        self._bpe_cache[word] = result
        return result


_NO_MERGE = float("inf")


def _words(pattern: re.Pattern[str], text: str) -> list[str]:
    r"""CLIP's regex split. ``[^\W\d_]+`` also takes non-decimal numerics ('x²y'): emit each
    of those as its own word, as CLIP's ``[\p{N}]`` does (see module docstring)."""
    words: list[str] = []
    for word in pattern.findall(text):
        if word.isalpha() or not word[0].isalnum() or word[0].isdecimal():
            words.append(word)
            continue
        for is_letter, chars in groupby(word, key=str.isalpha):
            words.extend(["".join(chars)] if is_letter else chars)
    return words


def _build_tables(vocabulary: BpeVocabulary) -> _Tables:
    """Inverse table, merge ranks and split pattern; raises ValueError on inconsistent input."""
    encoder = vocabulary.encoder
    decoder = {token_id: token for token, token_id in encoder.items()}
    if len(decoder) != len(encoder):
        raise ValueError("vocabulary assigns the same id to more than one token")
    specials = {}
    for role in ("bos_token", "eos_token", "pad_token"):
        token = getattr(vocabulary, role)
        if token not in encoder:
            raise ValueError(f"{role} {token!r} is not in the vocabulary")
        specials[role] = encoder[token]
    byte_encoder = bytes_to_unicode()
    for char in byte_encoder.values():
        if char not in encoder or char + END_OF_WORD not in encoder:
            raise ValueError(f"vocabulary lacks the byte-level base token {char!r}")
    for first, second in vocabulary.merges:
        if first + second not in encoder:
            raise ValueError(f"merge {first!r} {second!r} makes {first + second!r}, not in vocab")
    special_tokens = [vocabulary.bos_token, vocabulary.eos_token]
    pattern = "|".join(re.escape(t) for t in special_tokens) + "|" + _WORD_PATTERN
    return _Tables(
        encoder=encoder,
        decoder=decoder,
        byte_encoder=byte_encoder,
        byte_decoder={char: byte for byte, char in byte_encoder.items()},
        bpe_ranks=dict(zip(vocabulary.merges, range(len(vocabulary.merges)))),  # as CLIP
        pattern=re.compile(pattern, re.IGNORECASE),
        bos_token_id=specials["bos_token"],
        eos_token_id=specials["eos_token"],
        pad_token_id=specials["pad_token"],
        special_ids=frozenset(specials.values()),
        model_max_length=vocabulary.model_max_length,
    )


def read_tokenizer_dir(directory: Path) -> BpeVocabulary:
    """BpeVocabulary from a transformers tokenizer directory.

    Uses vocab.json + merges.txt when both exist, else tokenizer.json (fast-tokenizer format).
    bos/eos/pad tokens and model_max_length come from tokenizer_config.json and
    special_tokens_map.json (the latter wins) when present, else CLIP's defaults.
    """
    if not directory.is_dir():
        raise FileNotFoundError(f"tokenizer directory {directory} does not exist")
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    json_path = directory / "tokenizer.json"
    if vocab_path.is_file() and merges_path.is_file():
        encoder = _read_vocab(_read_json(vocab_path), vocab_path)
        merges = _read_merges_txt(merges_path)
    elif json_path.is_file():
        encoder, merges = _read_tokenizer_json(json_path)
    else:
        raise FileNotFoundError(
            f"no tokenizer files in {directory}: expected vocab.json + merges.txt or tokenizer.json"
        )
    return BpeVocabulary(encoder=encoder, merges=merges, **_read_special_settings(directory))


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def _read_vocab(data: object, path: Path) -> dict[str, int]:
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: vocabulary must be a non-empty token -> id mapping")
    for token, token_id in data.items():
        if type(token_id) is not int or token_id < 0:
            raise ValueError(f"{path}: token {token!r} has id {token_id!r}, not an int >= 0")
    return dict(data)


def _read_merges_txt(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text: {error}") from error
    merges = []
    for line_number, line in enumerate(lines, start=1):
        if not line.strip() or (line_number == 1 and line.startswith("#version")):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{line_number}: expected 'first second', got {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def _read_tokenizer_json(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    data = _read_json(path)
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or "vocab" not in model or "merges" not in model:
        raise ValueError(f"{path}: expected a 'model' object with 'vocab' and 'merges'")
    kind, suffix = model.get("type", "BPE"), model.get("end_of_word_suffix", END_OF_WORD)
    if kind != "BPE" or suffix != END_OF_WORD:
        raise ValueError(f"{path}: not CLIP BPE (type={kind!r}, end_of_word_suffix={suffix!r})")
    encoder = _read_vocab(model["vocab"], path)
    for added in data.get("added_tokens") or []:
        if not isinstance(added, dict) or not isinstance(added.get("content"), str):
            raise ValueError(f"{path}: malformed added_tokens entry {added!r}")
        encoder.setdefault(added["content"], added.get("id"))
    encoder = _read_vocab(encoder, path)  # re-check ids of added tokens
    merges = []
    for merge in model["merges"]:
        parts = merge.split(" ") if isinstance(merge, str) else merge
        if not (isinstance(parts, list) and len(parts) == 2 and all(type(p) is str for p in parts)):
            raise ValueError(f"{path}: malformed merge {merge!r}, expected 'a b' or ['a', 'b']")
        merges.append((parts[0], parts[1]))
    return encoder, merges


def _read_special_settings(directory: Path) -> dict[str, object]:
    """bos/eos/pad token strings and model_max_length found in the directory's config files."""
    settings: dict[str, object] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = directory / name
        if not path.is_file():
            continue
        data = _read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        for role in ("bos_token", "eos_token", "pad_token"):
            value = data.get(role)
            if isinstance(value, dict):  # AddedToken serialised as {"content": ..., ...}
                value = value.get("content")
            if value is None:
                continue
            if not isinstance(value, str):
                raise ValueError(f"{path}: {role} must be a string, got {value!r}")
            settings[role] = value
        if "model_max_length" in data:
            max_length = data["model_max_length"]
            if type(max_length) is not int or max_length < 2:
                raise ValueError(f"{path}: model_max_length must be an int >= 2: {max_length!r}")
            settings["model_max_length"] = max_length
    return settings
