import numpy as np
import pytest
import torch

from training.memory_eval import _instances, _match, _memory, _phrase_pair, _PromptTracks


def test_instance_rules():
    logits = torch.full((3, 4, 4), -5.0)
    logits[1, :2, :2] = 5.0  # query 1: top-left quarter
    query_prob = torch.tensor([0.1, 0.3, 0.2])
    strict, strict_scores = _instances(logits, query_prob, torch.tensor(0.9), 0.5, (8, 8), "threshold")
    assert strict.shape == (0, 8, 8) and strict_scores.shape == (0,)  # no query reaches 0.5
    top1, top1_scores = _instances(logits, query_prob, torch.tensor(0.9), 0.5, (8, 8), "top1")
    assert top1_scores == pytest.approx([0.27])
    assert top1.shape == (1, 8, 8) and top1[0, :4, :4].all() and not top1[0, 4:, :].any()
    absent, _ = _instances(logits, query_prob, torch.tensor(0.2), 0.5, (8, 8), "top1")
    assert absent.shape == (0, 8, 8)  # concept judged absent: nothing


def test_match_assigns_best_iou_and_leaves_absent_objects_empty():
    gt = np.zeros((2, 6, 6), dtype=bool)
    gt[0, :3, :3] = True  # object 0 visible, object 1 absent
    pred = np.zeros((2, 6, 6), dtype=bool)
    pred[0, 3:, 3:] = True
    pred[1, :3, :2] = True
    matched = _match(gt, pred)
    assert np.array_equal(matched[0], pred[1]) and not matched[1].any()
    assert all(not m.any() for m in _match(gt, np.zeros((0, 6, 6), dtype=bool)))
    assert _match(gt[:0], pred) == []  # a negative prompt: instances, but no object to match


def test_memory_slots_hold_the_most_recent_frames_last():
    features = [torch.full((2, 1, 1), float(k)) for k in range(5)]
    memory, mask = _memory(features, query_idx=2, slots=4)
    assert mask.tolist() == [False, False, True, True]
    assert memory[:, 0, 0, 0].tolist() == [0.0, 0.0, 0.0, 1.0]
    memory, mask = _memory(features, query_idx=5, slots=3)
    assert mask.all() and memory[:, 0, 0, 0].tolist() == [2.0, 3.0, 4.0]
    # The other-video control may come from a shorter video: its frame indices wrap around.
    memory, mask = _memory(features[:3], query_idx=5, slots=3)
    assert mask.all() and memory[:, 0, 0, 0].tolist() == [2.0, 0.0, 1.0]


def test_evaluate_memory_rejects_unknown_rules(tmp_path):
    from training.memory_eval import evaluate_memory

    with pytest.raises(ValueError, match="rules"):
        evaluate_memory(torch.nn.Linear(1, 1), tmp_path, tmp_path, rules=("best",))


def test_instances_become_tracked_masklets_with_mean_scores():
    gt = np.zeros((1, 3, 8, 8), dtype=bool)  # [O, E, H, W]
    gt[0, :, 1:4, 1:4] = True
    tracks = _PromptTracks()
    for t, score in enumerate((0.6, 0.8, 0.7)):
        masks = np.zeros((2, 8, 8), dtype=bool)
        masks[0, 1:4, 1 + (t > 1):4] = True  # follows the object
        masks[1, 6:, 6:] = t == 0  # a one-frame false positive
        tracks.add(masks[: 2 if t == 0 else 1], np.array([score, 0.9])[: 2 if t == 0 else 1])
    pair = _phrase_pair("v", "red circle", gt, [0], tracks)
    assert len(pair.gt) == 1 and len(pair.pred) == 2 and pair.num_frames == 3
    assert [m.score for m in pair.pred] == pytest.approx([0.7, 0.9])
    assert [f is None for f in pair.pred[1].frames] == [False, True, True]
    negative = _phrase_pair("v", "blue square", gt, [], _PromptTracks())
    assert negative.gt == () and negative.pred == ()


def _tiny_student_with_memory(seed: int):
    """The same random tiny image student every time, its memory path opened with weights of ``seed``."""
    from efficient_sam3 import EfficientSam3Config, EfficientSam3Model
    from model_helpers import open_memory_path

    torch.manual_seed(0)
    model = EfficientSam3Model(EfficientSam3Config.from_preset("tiny")).eval()
    return open_memory_path(model, 1.0, seed=seed)


def test_models_of_one_image_student_score_in_one_pass_as_each_alone(tmp_path):
    """A recipe study scores its video-stage models together: shared work runs once, yet each model's
    scores are its own (its memory path, not the first model's) and equal its scores alone."""
    from training.memory_eval import evaluate_memory, evaluate_memory_models
    from video_stage_data import write_random_cache, write_videos

    sav_root = write_videos(tmp_path / "sav", 1)
    cache_dir = write_random_cache(sav_root, tmp_path / "cache")
    first, second = _tiny_student_with_memory(1), _tiny_student_with_memory(2)
    settings = dict(threshold=0.02, show_progress=False, rules=("threshold",), max_negative_prompts=0,
                    conditions=("memory_off", "memory_on"))  # a low threshold: random models find instances
    together = evaluate_memory_models([first, second], sav_root, cache_dir, **settings)
    alone = evaluate_memory(second, sav_root, cache_dir, **{**settings, "conditions": ("memory_on",)})
    assert together[1].scores["threshold"]["memory_on"] == alone.scores["threshold"]["memory_on"]
    assert together[1].concept["memory_on"] == alone.concept["memory_on"]
    off = [result.per_video["threshold"] for result in together]
    assert [{v: s["memory_off"] for v, s in o.items()} for o in off] == [{v: s["memory_off"] for v, s in off[0].items()}] * 2
    assert together[0].per_video != together[1].per_video  # each model decoded with its own memory path
    assert 0 < together[0].scores["threshold"]["memory_on"].jf < 100


def test_models_scored_together_must_share_their_image_student():
    from training.memory_eval import check_shared_image_model

    first, second = _tiny_student_with_memory(1), _tiny_student_with_memory(2)
    check_shared_image_model([first, second], ["a", "b"])  # only the memory modules differ: accepted
    with torch.no_grad():
        second.detr_encoder.layers[0].self_attn.o_proj.weight.add_(1.0)
    with pytest.raises(ValueError, match=r"b: differs from a outside the memory modules \(detr_encoder"):
        check_shared_image_model([first, second], ["a", "b"])
