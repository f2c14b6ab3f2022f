"""Our J&F equals SA-V's official evaluator (sam2 ``sav_dataset/utils/sav_benchmark.py``), per object.

The expected numbers in ``tests/fixtures/sav_official/expected.json`` were produced by running the
official code on the fixture videos (``make_fixtures.py``); here the same videos are redrawn and our
evaluator must give every object's J and F within 0.01, on PNG folders and on runtime JSON.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from training.evaluate import evaluate, main
from training.metrics import score_video
from original_parity import fixture_script

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "sav_official"
TOLERANCE = 0.01



MAKER = fixture_script("make_fixtures", FIXTURE_DIR)
EXPECTED = json.loads((FIXTURE_DIR / "expected.json").read_text())


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sav_official")
    videos = MAKER.write_fixture(root)
    assert MAKER.digest(videos) == EXPECTED["digest"], "fixture drawing changed: rerun make_fixtures.py"
    return root


def _ours(result) -> dict:
    return {vid: {f"{o.obj_id:03d}": {"J": o.j, "F": o.f} for o in v.objects} for vid, v in result.per_video.items()}


def _max_difference(ours: dict, official: dict) -> tuple[float, float]:
    assert ours.keys() == official.keys()
    dj = df = 0.0
    for video, objects in official.items():
        assert ours[video].keys() == objects.keys(), video
        for obj, scores in objects.items():
            dj = max(dj, abs(ours[video][obj]["J"] - scores["J"]))
            df = max(df, abs(ours[video][obj]["F"] - scores["F"]))
    return dj, df


@pytest.mark.parametrize("mode", ["skip_first_and_last", "all_frames"])
def test_png_folders_match_the_official_evaluator(fixture_root, mode):
    result = evaluate(fixture_root / "pred", fixture_root / "gt", skip_first_last=mode == "skip_first_and_last",
                      show_progress=False)
    assert result.skipped == {}
    dj, df = _max_difference(_ours(result), EXPECTED[mode])
    assert dj <= TOLERANCE and df <= TOLERANCE, (dj, df)


@pytest.mark.parametrize("gt", ["gt_json", "gt"])
def test_runtime_json_matches_the_official_evaluator(fixture_root, gt):
    # Runtime JSON: other ids, another order, a false positive, non-annotated frames; against the
    # train-layout JSON (with categories) and the PNG ground truth (without: any prediction may match).
    result = evaluate(fixture_root / "pred_json", fixture_root / gt, show_progress=False)
    video = result.per_video["video_a"]
    expected_ids = {int(k): v for k, v in EXPECTED["json_pred_ids"].items()}
    assert {o.obj_id: o.pred_obj_id for o in video.objects} == {o: expected_ids.get(o) for o in range(7)}
    dj, df = _max_difference(_ours(result), {"video_a": EXPECTED["skip_first_and_last"]["video_a"]})
    assert dj <= TOLERANCE and df <= TOLERANCE, (dj, df)


def test_official_layout_round_trip(fixture_root, tmp_path):
    # --write-official-layout writes what sam2's evaluator reads; scoring it as PNG folders gives the same.
    main(["--pred", str(fixture_root / "pred_json"), "--gt-root", str(fixture_root / "gt_json"),
          "--write-official-layout", str(tmp_path / "official")])
    result = evaluate(tmp_path / "official" / "pred", tmp_path / "official" / "gt", show_progress=False)
    dj, df = _max_difference(_ours(result), {"video_a": EXPECTED["skip_first_and_last"]["video_a"]})
    assert dj <= TOLERANCE and df <= TOLERANCE, (dj, df)
    assert sorted(p.name for p in (tmp_path / "official" / "pred" / "video_a").iterdir()) == [
        f"{o:03d}" for o in range(7)]


def test_in_memory_scores_match_the_official_evaluator(fixture_root):
    # training.metrics.score_video (memory_eval's path) on the videos whose objects have every frame.
    for name in ("video_a", "video_c"):
        objects = MAKER.draw_videos()[name]["objects"]
        gt = np.stack([np.stack(o["gt"]) for o in objects.values()])  # [O, K, H, W]
        pred = np.stack([np.stack(o["pred"]) for o in objects.values()])
        score = score_video(gt, pred)
        for row, obj_id in enumerate(objects):
            official = EXPECTED["skip_first_and_last"][name][f"{obj_id:03d}"]
            assert abs(100 * score.j[row] - official["J"]) <= TOLERANCE
            assert abs(100 * score.f[row] - official["F"]) <= TOLERANCE


def test_late_objects_are_not_credited_for_frames_before_they_appear(fixture_root):
    # The bug the issue names: empty frames before an object appears used to count as perfect.
    result = evaluate(fixture_root / "pred", fixture_root / "gt", show_progress=False)
    bird = next(o for o in result.per_video["video_a"].objects if o.obj_id == 2)  # appears at frame 16, never predicted
    assert (bird.j, bird.f, bird.num_frames) == (0.0, 0.0, 3)
