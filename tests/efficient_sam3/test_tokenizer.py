"""ClipTokenizer against CLIP's known ids, transformers' CLIPTokenizer (the SAM3 teacher's) and the
ids the hand-written CLIP BPE it replaced gave on 3600 generated prompts (tests/fixtures/tokenizer)."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest
import torch

from efficient_sam3.tokenizer import ClipTokenizer
from original_parity import fixture_script

TOKENIZER_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tokenizer"
ASSETS = Path(__file__).resolve().parents[2] / "efficient_sam3" / "assets"

SOT, EOT = 49406, 49407
CAT_IDS = [SOT, 320, 1125, 539, 320, 2368, EOT]  # "a photo of a cat" in OpenAI CLIP

PROMPTS = [
    "red circle",
    "yellow star",
    "a dog's tail",
    "2 people",
    "a  B-52   bomber!",
    "café",
    "naïve Œuvre ÉCOLE",
    "e\u0301clair",  # decomposed accent: NFC in both
    "Straße",
    "İstanbul",
    "αβγ δ",
    "日本語のテキスト",
    "😀 emoji",
    "x² ½ Ⅻ ①",  # \p{N} that is not \d: one word per character
    "١٢٣ arabic digits",
    "snake_case__name",
    "it's 10:30pm, I'M HERE",
    "C++ & Python 100%",
    "hello\tworld\n  again ",
    "tab\u00a0nbsp",
    "dog’s “quoted”",  # curly quotes: neither tokenizer runs ftfy
    "ﬁsh",
    "a person wearing a yellow-green striped t-shirt and sunglasses",
    "<|endoftext|> inside",
]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hf_clip")
    fixture_script("make_expected_ids", TOKENIZER_FIXTURES).write_transformers_files(directory)
    return directory


@pytest.fixture(scope="module")
def hf_tokenizer(hf_dir: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.CLIPTokenizer.from_pretrained(str(hf_dir))


@pytest.fixture(scope="module")
def tokenizer() -> ClipTokenizer:
    return ClipTokenizer.default()


def test_known_clip_ids(tokenizer: ClipTokenizer) -> None:
    assert tokenizer.vocab_size == 49408
    special_ids = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert special_ids == (SOT, EOT, EOT)
    assert tokenizer.encode("a photo of a cat") == CAT_IDS[1:-1]
    input_ids, attention_mask = tokenizer(["a photo of a cat", ""], max_length=10)
    assert input_ids.dtype == attention_mask.dtype == torch.long
    assert input_ids.shape == attention_mask.shape == (2, 10)
    assert input_ids[0].tolist() == CAT_IDS + [EOT] * 3
    assert attention_mask[0].tolist() == [1] * 7 + [0] * 3
    assert input_ids[1, :2].tolist() == [SOT, EOT]
    assert attention_mask[1].tolist() == [1, 1] + [0] * 8
    assert tokenizer.encode("") == [] and tokenizer.encode("   \n") == []


def test_matches_transformers_clip_tokenizer(tokenizer: ClipTokenizer, hf_tokenizer) -> None:
    for prompt in PROMPTS:
        expected = hf_tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert tokenizer.encode(prompt) == expected, prompt
    input_ids, attention_mask = tokenizer(PROMPTS, max_length=32)
    expected = hf_tokenizer(PROMPTS, padding="max_length", max_length=32, return_tensors="pt")
    assert torch.equal(input_ids, expected["input_ids"])
    assert torch.equal(attention_mask, expected["attention_mask"])


def test_truncation_keeps_sot_and_ends_with_eot(tokenizer: ClipTokenizer, hf_tokenizer) -> None:
    input_ids, attention_mask = tokenizer(["a photo of a cat", "red circle"], max_length=5)
    assert input_ids.tolist() == [[SOT, 320, 1125, 539, EOT], [SOT, 736, 7117, EOT, EOT]]
    assert attention_mask.tolist() == [[1] * 5, [1, 1, 1, 1, 0]]
    expected = hf_tokenizer(["a photo of a cat"], truncation=True, max_length=5)["input_ids"]
    assert input_ids[:1].tolist() == expected
    long_prompt = " ".join(["cat"] * 100)
    ids, mask = tokenizer([long_prompt])
    assert ids.shape == (1, 32) and ids[0, 0] == SOT and ids[0, -1] == EOT and mask.all()


def test_cleaning_differs_from_transformers_only_by_html_unescape(
    tokenizer: ClipTokenizer, hf_tokenizer
) -> None:
    # CLIP's basic_clean html-unescapes (twice); transformers' CLIPTokenizer does not.
    assert tokenizer.encode("salt &amp;amp; pepper") == tokenizer.encode("salt & pepper")
    assert hf_tokenizer("salt &amp; pepper", add_special_tokens=False)["input_ids"] != (
        tokenizer.encode("salt &amp; pepper")
    )
    # No ftfy: curly apostrophes are not straightened (ftfy's uncurl_quotes would).
    assert tokenizer.encode("dog’s") != tokenizer.encode("dog's")


def test_special_token_strings_follow_clips_word_split(tokenizer: ClipTokenizer) -> None:
    assert tokenizer.encode("a <|endoftext|>") == [320, EOT]
    assert tokenizer.encode("<|ENDOFTEXT|><|endoftext|>") == [EOT, EOT]  # lower-cased first
    # After punctuation the run takes "<|" (CLIP's regex), so there is no special token.
    assert EOT not in tokenizer.encode("!<|endoftext|>")
    assert EOT not in tokenizer.encode("!<|endoftext|><|endoftext|>")
    # CLIP matches the special words ignoring case: the long s gives one word, encoded with BPE.
    assert SOT not in tokenizer.encode("<|ſtartoftext|>")
    assert tokenizer.decode(tokenizer.encode("<|ſtartoftext|>")) == "<|ſtartoftext|>"


def test_decode(tokenizer: ClipTokenizer) -> None:
    assert tokenizer.decode(tokenizer.encode("A Dog's  tail, café!")) == "a dog 's tail , café !"
    input_ids, _ = tokenizer(["red circle"], max_length=6)
    assert tokenizer.decode(input_ids[0]) == "<|startoftext|>red circle <|endoftext|>" + (
        "<|endoftext|>" * 2
    )
    assert tokenizer.decode(input_ids[0], skip_special_tokens=True) == "red circle"
    with pytest.raises(ValueError, match="49408"):
        tokenizer.decode([49408])


def test_rejects_bad_input(tokenizer: ClipTokenizer) -> None:
    with pytest.raises(ValueError, match="str"):
        tokenizer.encode(["red circle"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="str"):
        tokenizer.encode(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="list of str"):
        tokenizer("red circle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="str"):
        tokenizer(["red circle", 3])  # type: ignore[list-item]
    for max_length in (1, 78):
        with pytest.raises(ValueError, match="max_length"):
            tokenizer(["red circle"], max_length=max_length)


def test_from_pretrained_vocab_and_merges(tokenizer: ClipTokenizer, hf_dir: Path) -> None:
    loaded = ClipTokenizer.from_pretrained(hf_dir)
    assert loaded.vocab_size == 49408 and loaded.model_max_length == 77
    for prompt in PROMPTS:
        assert loaded.encode(prompt) == tokenizer.encode(prompt), prompt
    assert torch.equal(loaded(PROMPTS)[0], tokenizer(PROMPTS)[0])


def test_from_pretrained_reads_pad_token_and_max_length(hf_dir: Path, tmp_path: Path) -> None:
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((hf_dir / name).read_bytes())
    config = {"pad_token": "<|endoftext|>", "model_max_length": 40}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    # special_tokens_map.json wins over tokenizer_config.json, AddedToken dicts are accepted.
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"pad_token": {"content": "!"}}))
    loaded = ClipTokenizer.from_pretrained(str(tmp_path))
    assert loaded.pad_token_id == 0 and loaded.model_max_length == 40
    input_ids, attention_mask = loaded(["red circle"], max_length=40)
    assert input_ids[0].tolist() == [SOT, 736, 7117, EOT] + [0] * 36
    assert attention_mask.sum().item() == 4
    with pytest.raises(ValueError, match="max_length"):
        loaded(["red circle"], max_length=41)


def test_from_pretrained_tokenizer_json(
    tokenizer: ClipTokenizer, hf_tokenizer, tmp_path: Path
) -> None:
    hf_tokenizer.save_pretrained(str(tmp_path / "pairs"))  # transformers 5 writes merges as pairs
    data = json.loads((tmp_path / "pairs" / "tokenizer.json").read_text())
    assert not (tmp_path / "pairs" / "vocab.json").exists()
    strings = tmp_path / "strings"
    strings.mkdir()
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    del data["model"]["vocab"]["<|startoftext|>"]  # must come back from added_tokens
    (strings / "tokenizer.json").write_text(json.dumps(data))
    for directory in (tmp_path / "pairs", strings):
        loaded = ClipTokenizer.from_pretrained(directory)
        assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (SOT, EOT, EOT)
        for prompt in PROMPTS:
            assert loaded.encode(prompt) == tokenizer.encode(prompt), prompt


def test_from_pretrained_errors_name_the_files(hf_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        ClipTokenizer.from_pretrained(empty)
    with pytest.raises(FileNotFoundError, match="missing"):
        ClipTokenizer.from_pretrained(tmp_path / "missing")

    bad_json = tmp_path / "bad_json"
    bad_json.mkdir()
    (bad_json / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad_json.*tokenizer.json"):
        ClipTokenizer.from_pretrained(bad_json)

    bad_merges = tmp_path / "bad_merges"
    bad_merges.mkdir()
    (bad_merges / "vocab.json").write_bytes((hf_dir / "vocab.json").read_bytes())
    (bad_merges / "merges.txt").write_text("#version: 0.2\ni n\nt h e\n")
    with pytest.raises(ValueError, match=r"merges.txt:3"):
        ClipTokenizer.from_pretrained(bad_merges)

    inconsistent = tmp_path / "inconsistent"
    inconsistent.mkdir()
    (inconsistent / "vocab.json").write_bytes((hf_dir / "vocab.json").read_bytes())
    (inconsistent / "merges.txt").write_text("#version: 0.2\ni n\nqz qz\n")
    with pytest.raises(ValueError, match="inconsistent.*qzqz"):
        ClipTokenizer.from_pretrained(inconsistent)

    wrong_pad = tmp_path / "wrong_pad"
    wrong_pad.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (wrong_pad / name).write_bytes((hf_dir / name).read_bytes())
    (wrong_pad / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<pad>"}))
    with pytest.raises(ValueError, match="wrong_pad.*<pad>"):
        ClipTokenizer.from_pretrained(wrong_pad)


def test_packaged_vocabulary_loads_fast_and_once() -> None:
    fresh = ClipTokenizer.default()
    start = time.perf_counter()
    assert fresh.encode("red circle") == [736, 7117]
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"loading the packaged vocabulary took {elapsed:.2f} s"  # ~0.15 s idle
    start = time.perf_counter()
    for _ in range(100):
        fresh(["red circle", "yellow star"])
    assert time.perf_counter() - start < elapsed + 0.5  # tables are not rebuilt per call


@pytest.fixture(scope="module")
def frozen() -> dict:
    with gzip.open(TOKENIZER_FIXTURES / "expected_ids.json.gz", "rt", encoding="utf-8") as file:
        return json.load(file)


def test_frozen_ids_on_generated_prompts(tokenizer: ClipTokenizer, frozen: dict) -> None:
    """Ids, batches and decodes equal the hand-written BPE's (tokenizer.py blob in generated_with)."""
    script = fixture_script("make_expected_ids", TOKENIZER_FIXTURES)
    prompts = frozen["prompts"]
    assert len(prompts) == 3600
    for key, expected in script.expected(tokenizer, prompts).items():
        assert expected == frozen[key], key


def test_from_pretrained_matches_packaged_on_generated_prompts(hf_dir: Path, frozen: dict) -> None:
    loaded = ClipTokenizer.from_pretrained(hf_dir)
    assert [loaded.encode(prompt) for prompt in frozen["prompts"]] == frozen["encode"]


def test_packaged_tokenizer_json_is_built_from_the_merge_file() -> None:
    script = fixture_script("make_tokenizer_json", ASSETS)
    assert json.loads((ASSETS / "tokenizer.json").read_text(encoding="utf-8")) == json.loads(script.tokenizer_json())
