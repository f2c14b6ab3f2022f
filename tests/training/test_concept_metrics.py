"""Our cgF1 / IL_MCC / positive micro-F1 / pHOTA equal SAM3's official evaluators on shared fixtures.

``tests/fixtures/saco_official/expected.json`` holds the numbers SAM3's own code
(``saco_veval_evaluators.py``) produced on the fixture files and on SAM3's toy files
(``make_fixtures.py``); here the fixture files are redrawn and scored by ``training.concept_metrics``.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from efficient_sam3.masks import encode_rle
from training.concept_io import load_saco_pairs, runtime_video_pairs
from training.concept_metrics import ConceptMasklet, PhrasePair, concept_metrics
from training.evaluate import main
from original_parity import fixture_script

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "saco_official"
TOLERANCE = 1e-6  # official 0-1 units; the issue allows 0.1 (points), these are computed the same way
EXPECTED = json.loads((FIXTURE_DIR / "expected.json").read_text())
METRICS = ("cgf1", "il_mcc", "positive_micro_f1", "cgf1_50", "cgf1_75", "phota", "phota_deta", "phota_assa")



MAKER = fixture_script("make_fixtures", FIXTURE_DIR)


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("saco_official")
    paths = MAKER.write_fixture(root)
    assert MAKER.digest(paths) == EXPECTED["digest"], "fixture drawing changed: rerun make_fixtures.py"
    return paths


def _assert_matches(result, official: dict) -> None:
    for name in METRICS:
        assert abs(getattr(result, name) / 100 - official[name]) <= TOLERANCE, (name, getattr(result, name), official)


@pytest.mark.parametrize("name", ["mixed", "trigger_happy"])
def test_fixtures_match_the_official_code(fixture_files, name):
    result = concept_metrics(load_saco_pairs(*fixture_files[name]))
    _assert_matches(result, EXPECTED["fixtures"][name])
    assert result.num_pairs == 18 and result.num_positive_pairs == 4  # 3 videos x 6 phrases, mostly negative


def _toy_dir() -> Path | None:
    for root in (os.environ.get("SAM3_ROOT"), "/work/orig-src/sam3"):
        if root and all((Path(root) / f).is_file() for f in EXPECTED["toy"]["files"]):
            return Path(root)
    return None


@pytest.mark.skipif(_toy_dir() is None, reason="SAM3's toy files not found (set SAM3_ROOT to a sam3 checkout)")
def test_sam3_toy_files_match_the_official_code():
    root = _toy_dir()
    paths = [root / f for f in EXPECTED["toy"]["files"]]
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths] == EXPECTED["toy"]["sha256"]
    _assert_matches(concept_metrics(load_saco_pairs(*paths)), EXPECTED["toy"]["official"])


def _write_ours(fixture: dict, root: Path, pred_root: Path | None = None) -> list[tuple[Path, Path]]:
    """The fixture as SA-V _manual.json (with video_np_pairs) + runtime prediction JSON per video."""
    files = []
    for video, (height, width) in MAKER.VIDEOS.items():
        empty = np.zeros((height, width), bool)
        gt = [g for g in fixture["gt"] if g[0] == video]
        pred = [p for p in fixture["pred"] if p[0] == video]
        frames = [4 * t for t in range(MAKER.NUM_FRAMES)]
        gt_json = {"video_id": f"v{video}", "video_frame_count": frames[-1] + 1, "video_height": height,
                   "video_width": width, "masklet_id": list(range(len(gt))),
                   "masklet_first_appeared_frame": [0] * len(gt),
                   "masklet_category": [g[1] for g in gt],
                   "masklet": [[encode_rle(empty if g[2][t] is None else g[2][t]) for g in gt] for t in range(len(frames))],
                   "video_np_pairs": [{"noun_phrase": p, "num_masklets": sum(g[1] == p for g in gt)}
                                      for v, p in fixture["pairs"] if v == video]}
        pred_json = {"video_id": f"v{video}", "video_height": height, "video_width": width, "frame_indices": frames,
                     "masklet_id": [10 + k for k in range(len(pred))], "masklet_category": [p[1] for p in pred],
                     "masklet_score": [p[3] for p in pred],
                     "masklet": [[encode_rle(empty if p[2][t] is None else p[2][t]) for p in pred]
                                 for t in range(len(frames))]}
        files.append((root / f"v{video}_manual.json", (pred_root or root) / f"v{video}.json"))
        files[-1][0].write_text(json.dumps(gt_json))
        files[-1][1].write_text(json.dumps(pred_json))
    return files


def test_runtime_json_gives_the_same_numbers(tmp_path):
    # Our formats (SA-V ground truth with video_np_pairs, runtime predictions with masklet_score) carry
    # no crowd flag, so the crowd annotation is dropped from both sides before comparing.
    fixture = MAKER.draw_fixtures()["mixed"]
    fixture = {**fixture, "gt": [g for g in fixture["gt"] if not g[3]]}
    gt, preds = MAKER.saco_files(fixture)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    reference = concept_metrics(load_saco_pairs(tmp_path / "gt.json", tmp_path / "pred.json"))
    pairs = [pair for gt_path, pred_path in _write_ours(fixture, tmp_path) for pair in runtime_video_pairs(gt_path, pred_path)]
    ours = concept_metrics(pairs)
    assert ours.num_pairs == reference.num_pairs == 18
    for name in METRICS:
        assert abs(getattr(ours, name) - getattr(reference, name)) <= 1e-9, name


def _pair(phrase, gt, pred, scores):
    to_masklet = lambda masks, score=1.0: ConceptMasklet(frames=tuple(None if m is None else encode_rle(m) for m in masks),
                                                         score=score)
    return PhrasePair("v", phrase, 2, tuple(to_masklet(m) for m in gt),
                      tuple(to_masklet(m, s) for m, s in zip(pred, scores)))


def test_false_positives_on_absent_phrases_cost_il_mcc_not_positive_f1():
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    present = _pair("cat", [[mask, mask]], [[mask, mask]], [0.9])
    quiet = concept_metrics([present, _pair("dog", [], [], []), _pair("cow", [], [[mask, None]], [0.2])])
    assert (quiet.cgf1, quiet.il_mcc, quiet.positive_micro_f1, quiet.phota) == pytest.approx((100, 100, 100, 100),
                                                                                              abs=0.05)
    noisy = concept_metrics([present, _pair("dog", [], [[mask, None]], [0.9]), _pair("cow", [], [], [])])
    assert noisy.il_counts == {"TP": 1, "FP": 1, "TN": 1, "FN": 0}
    assert noisy.positive_micro_f1 == pytest.approx(100, abs=0.05) and noisy.il_mcc == pytest.approx(50, abs=0.05)
    assert noisy.cgf1 == pytest.approx(50, abs=0.05) and noisy.phota < 100


def test_bad_files_name_the_file(tmp_path, fixture_files):
    bad = tmp_path / "pred.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=str(bad)):
        load_saco_pairs(fixture_files["mixed"][0], bad)
    with pytest.raises(ValueError, match="missing.json"):
        load_saco_pairs(tmp_path / "missing.json", fixture_files["mixed"][1])


def test_evaluate_cli_reports_concept_metrics(tmp_path, capsys):
    fixture = MAKER.draw_fixtures()["mixed"]
    fixture = {**fixture, "gt": [g for g in fixture["gt"] if not g[3]]}
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    files = _write_ours(fixture, tmp_path / "gt", tmp_path / "pred")
    expected = concept_metrics([pair for gt, pred in files for pair in runtime_video_pairs(gt, pred)])
    main(["--pred", str(tmp_path / "pred"), "--gt-root", str(tmp_path / "gt"), "--out", str(tmp_path / "out.json")])
    assert "cgF1" in capsys.readouterr().out
    concept = json.loads((tmp_path / "out.json").read_text())["concept"]
    assert concept["cgf1"] == pytest.approx(expected.cgf1) and concept["phota"] == pytest.approx(expected.phota)
    assert concept["num_pairs"] == 18 and len(concept["per_pair"]) == 18
