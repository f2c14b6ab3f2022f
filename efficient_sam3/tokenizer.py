"""Offline CLIP tokenizer: CLIP's text cleaning here, byte-level BPE by the ``tokenizers`` package.

Reproduces OpenAI CLIP's ``simple_tokenizer.py`` (as copied into open_clip, MIT licence, see
``assets/LICENSE-open_clip.txt``) minus ftfy. The BPE runs in ``tokenizers`` (Rust) from
``assets/tokenizer.json``, which ``assets/make_tokenizer_json.py`` builds from open_clip's merge
list ``assets/bpe_simple_vocab_16e6.txt.gz``. Steps, in order:

1. ``clean_text``: NFC, ``html.unescape`` twice, whitespace collapse, lower case. This stays in
   Python: no ``tokenizers`` normalizer unescapes HTML, and its ``Lowercase`` works per character
   (``"ΟΔΟΣ"`` gives ``οδοσ``; Python and CLIP give the final sigma, ``οδος``). ftfy is not
   available, so its repairs do NOT happen: mojibake (``cafÃ©``), curly quotes (``’`` stays),
   latin ligatures (``ﬁ``), full-width characters, terminal escapes and control characters.
2. ``<|startoftext|>`` / ``<|endoftext|>`` in the text become their ids only where CLIP's regex
   starts a word there: not right after punctuation, whose run takes the ``<|`` (``"!<|endoftext|>"``
   is the words ``!<|``, ``endoftext``, ``|>``). CLIP matches them ignoring case, so ``<|ſtartoftext|>``
   is one word too, encoded with BPE as CLIP does.
3. ``tokenizers``: CLIP's word split (``SPLIT_PATTERN``), byte-level mapping, BPE with ``</w>``.

transformers' ``CLIPTokenizer`` (the SAM3 teacher's) differs from CLIP in steps 1-3: no
``html.unescape`` (``"&amp;"`` stays literal), per-character lower case, a narrower whitespace set
(``\\x1c``-``\\x1f``, ``\\x85`` are kept), ``'ſ`` not taken as a contraction and special tokens
split out wherever they occur (tests/fixtures/tokenizer/make_expected_ids.py counts each).
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
DEFAULT_MODEL_MAX_LENGTH = 77  # CLIP's text context length
END_OF_WORD = "</w>"
PACKAGED_TOKENIZER = "tokenizer.json"
# CLIP's regex minus its special-token alternatives (step 2). CLIP compiles it with re.IGNORECASE; on
# lower-cased text that matters only for the long s, which Python's re matches for "s".
SPLIT_PATTERN = r"""'[sſ]|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+"""


def clean_text(text: str) -> str:
    """CLIP's basic + whitespace clean and lower case, without ftfy (see module docstring)."""
    text = unicodedata.normalize("NFC", text)  # ftfy.fix_text ends with NFC
    text = html.unescape(html.unescape(text))
    return " ".join(text.split()).lower()


def build_backend(encoder: dict[str, int], merges: list[tuple[str, str]]) -> Tokenizer:
    """``tokenizers`` pipeline of steps 3 (module docstring) for a CLIP BPE vocabulary."""
    backend = Tokenizer(models.BPE(encoder, merges, end_of_word_suffix=END_OF_WORD))
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="removed", invert=True),  # keep the matches
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    return backend


@dataclass(frozen=True)
class SpecialTokens:
    """Special token strings, and the longest sequence (with bos/eos) the text encoder accepts."""

    bos_token: str = BOS_TOKEN
    eos_token: str = EOS_TOKEN
    pad_token: str = EOS_TOKEN
    model_max_length: int = DEFAULT_MODEL_MAX_LENGTH


@dataclass(frozen=True)
class BpeVocabulary:
    """A tokenizer directory's contents. encoder: token -> id; merges: highest priority first."""

    encoder: dict[str, int]
    merges: list[tuple[str, str]]
    specials: SpecialTokens = field(default_factory=SpecialTokens)


class ClipTokenizer:
    """CLIP BPE tokenizer producing SAM3's fixed-length ``input_ids`` / ``attention_mask``.

    ``ClipTokenizer.default()`` uses the packaged vocabulary (49408 tokens, bos/sot 49406,
    eos/eot 49407, pad 49407). ``from_pretrained(dir)`` reads a transformers tokenizer directory
    (vocab.json + merges.txt, or tokenizer.json) and tokenizes with the same pipeline.
    """

    def __init__(self, backend: Tokenizer, specials: SpecialTokens = SpecialTokens()) -> None:
        self._backend = backend
        ids = {}
        for role in ("bos_token", "eos_token", "pad_token"):
            token = getattr(specials, role)
            ids[role] = backend.token_to_id(token)
            if ids[role] is None:
                raise ValueError(f"{role} {token!r} is not in the vocabulary")
        self.bos_token_id: int = ids["bos_token"]
        self.eos_token_id: int = ids["eos_token"]
        self.pad_token_id: int = ids["pad_token"]
        self.model_max_length = specials.model_max_length
        self.vocab_size = max(backend.get_vocab().values()) + 1
        self._special_ids = frozenset(ids.values())
        self._word_ids = {specials.bos_token: self.bos_token_id, specials.eos_token: self.eos_token_id}
        words = (specials.bos_token, specials.eos_token)
        self._special_words = re.compile("|".join(map(re.escape, words)), re.IGNORECASE)  # as CLIP
        self._byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)

    @classmethod
    def default(cls) -> ClipTokenizer:
        """Packaged open_clip vocabulary (assets/tokenizer.json); fully offline, ~0.15 s."""
        data = resources.files("efficient_sam3").joinpath("assets", PACKAGED_TOKENIZER).read_text("utf-8")
        return cls(Tokenizer.from_str(data))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ClipTokenizer:
        """Tokenizer files of a transformers checkpoint directory (e.g. facebook/sam3)."""
        directory = Path(directory)
        vocabulary = read_tokenizer_dir(directory)
        try:
            _check_vocabulary(vocabulary)
            return cls(build_backend(vocabulary.encoder, vocabulary.merges), vocabulary.specials)
        except ValueError as error:
            raise ValueError(f"tokenizer files in {directory} are malformed: {error}") from error

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without bos/eos."""
        if not isinstance(text, str):
            raise ValueError(f"ClipTokenizer.encode expects a str, got {type(text).__name__}")
        ids: list[int] = []
        for piece, is_special_word in self._pieces(clean_text(text)):
            if not is_special_word:
                ids.extend(self._backend.encode(piece, add_special_tokens=False).ids)
            elif piece in self._word_ids:
                ids.append(self._word_ids[piece])
            else:  # a case variant such as <|ſtartoftext|>: one word of BPE, as in CLIP
                word = self._byte_level.pre_tokenize_str(piece)[0][0]
                ids.extend(token.id for token in self._backend.model.tokenize(word))
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
        pad = self.pad_token_id if pad_token_id is None else pad_token_id
        input_ids = torch.full((len(texts), max_length), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(texts), max_length), dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.bos_token_id, *self.encode(text)[: max_length - 2], self.eos_token_id]
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return input_ids, attention_mask

    def truncation_warning(self, text: str, context_length: int) -> str | None:
        """None if ``text`` fits ``context_length`` tokens with its start and end tokens; else a sentence saying
        how long it is and what part of it is encoded (runtime and export warn with it)."""
        token_ids = self.encode(text)
        if len(token_ids) + 2 <= context_length:
            return None
        kept = self.decode(token_ids[: context_length - 2])
        return (f"prompt {text!r} is {len(token_ids) + 2} tokens with its start and end tokens, over the text "
                f"encoder's context of {context_length}: only {kept!r} is encoded")

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        """Text of token ids (CLIP's decode: words separated by single spaces)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        tokens = []
        for token_id in map(int, ids):
            token = self._backend.id_to_token(token_id) if token_id >= 0 else None
            if token is None:
                raise ValueError(f"token id {token_id} is not in the vocabulary")
            if not (skip_special_tokens and token_id in self._special_ids):
                tokens.append(token)
        text = self._backend.decoder.decode(tokens)  # byte-level chars -> UTF-8, bad bytes -> U+FFFD
        return text.replace(END_OF_WORD, " ").strip()

    def _pieces(self, text: str) -> Iterator[tuple[str, bool]]:
        """Cleaned text cut around the special-token words of step 2: (piece, is_special_word).

        CLIP's regex starts a word at a special token unless the character before it continues a
        punctuation run (``[^\\s\\p{L}\\p{N}]``), i.e. anything but a space, letter or number, and
        is not the end of a special-token word itself.
        """
        start = special_end = 0
        for match in self._special_words.finditer(text):
            begin = match.start()
            before = text[begin - 1] if begin else " "
            if begin != special_end and not (before.isspace() or before.isalnum()):
                continue
            if begin > start:
                yield text[start:begin], False
            yield match.group(), True
            start = special_end = match.end()
        if start < len(text):
            yield text[start:], False


def _check_vocabulary(vocabulary: BpeVocabulary) -> None:
    """ValueError naming what does not fit in a tokenizer directory's vocabulary."""
    encoder = vocabulary.encoder
    if len(set(encoder.values())) != len(encoder):
        raise ValueError("vocabulary assigns the same id to more than one token")
    for char in pre_tokenizers.ByteLevel.alphabet():
        if char not in encoder or char + END_OF_WORD not in encoder:
            raise ValueError(f"vocabulary lacks the byte-level base token {char!r}")
    for first, second in vocabulary.merges:
        if first + second not in encoder:
            raise ValueError(f"merge {first!r} {second!r} makes {first + second!r}, not in vocab")


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
    return BpeVocabulary(encoder, merges, SpecialTokens(**_read_special_settings(directory)))


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
