"""Does the temporal memory help? J&F of one model on held-out videos under four memory conditions.

    python -m training.memory_eval --model DIR --sav-root DIR --cache-dir DIR [--out result.json]
    python -m training.memory_eval --model DIR DIR ... --sav-root DIR --cache-dir DIR   # a recipe study's models

Several models (video stages of one image student: seeds, recipe candidates) are scored in one pass:
what they share (image and text encoders, DETR encoder, memory off) runs once, and each model adds its
memory path and heads for the conditions with memory; each model's scores equal its scores alone.

- ``memory_off``: ``forward_video`` with every memory slot masked out (equal to the image model).
- ``memory_on``: memory = the cached features (``<cache_dir>/<video_id>.safetensors``, e.g. from a
  teacher) of the T annotated frames before the query frame, slot T-1 the most recent.
- ``memory_on_student_features``: memory = the model's own ``encode_image(frame).memory_features``
  of the same context frames, computed now -- what a device has.
- ``memory_on_other_video`` (control): memory = the cached features of ANOTHER held-out video (the next
  one in sorted order; frame indices wrap around), same valid slots. The video stage also adapts the
  memory path to the frozen image model, and that part of "memory on" helps whatever the memory holds:
  memory helps through what it remembers only as far as ``memory_on`` beats this control. (With a
  single held-out video, its own features in reverse order stand in for another video's.)

Protocol (the same for all three): every annotated frame except the first and last is scored (DAVIS /
SA-V); each video category present in the ground truth is prompted once per frame. Two instance
rules are scored from the same forward passes: "threshold" (SAM3's, the headline): a query is an
instance when ``sigmoid(pred_logits) * sigmoid(presence_logits) > threshold``; "top1" (a diagnostic
only, never the headline: it cannot tell a present concept from an absent one): those, plus the
best-scoring query whenever ``sigmoid(presence_logits) > threshold`` -- a model trained for minutes
scores its queries far below 0.5 (its strict-threshold J&F only counts absent objects), yet its best
query often has a usable mask. A mask is the logit upsampled (bilinear) to the video size, > 0.
Per frame and category, ground-truth objects
are matched one-to-one to predicted instances (``training.metrics.assign_predictions``: maximum total
IoU, an object may stay unmatched when an empty mask scores higher, e.g. when it is absent); then
J&F per object over the frames (``training.metrics.score_video``: SA-V's official rule, an object is
scored from the first evaluated frame where it or its prediction is non-empty; objects empty at every
evaluated frame are left out). Matching per frame uses the ground
truth's identities, so no tracking is scored. Scores are means over all objects of all videos (SA-V
style), 0-100. ``j_degraded`` / ``j_clean`` split J by whether the synthetic data degraded the frame.

Concept metrics (SAM3's, ``training.concept_metrics``; primary rule only): each video is also prompted
with the phrases its ground truth lists as absent (``video_np_pairs`` with 0 masklets; the synthetic
data lists the vocabulary's absent phrases). Per condition and prompt, the instances of the evaluated
frames are linked into masklets by the runtime's tracker (``efficient_sam3.tracker``; a masklet's score is
its mean instance score), and cgF1, IL_MCC, positive micro-F1 and pHOTA are computed over all
(held-out video, phrase) pairs, positive and negative (``MemoryEvalResult.concept``). J&F scores only
the positive prompts, as before. Prompts are decoded ``PROMPTS_PER_BATCH`` at a time.
"""

from __future__ import annotations

import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from efficient_sam3.cli import ArgumentParser, fail, non_negative_int, probability
from efficient_sam3.contract import preprocess_frame
from efficient_sam3.files import check_creatable, write_json_atomic
from efficient_sam3.freeze import VIDEO_TRAINABLE_MODULES
from efficient_sam3.masks import encode_rle
from efficient_sam3.outputs import TextFeatures
from efficient_sam3.tracker import TrackerConfig, TrackerState, update_tracks
from training.batch import PromptTokenizer
from training.config import DEFAULT_PROMPT
from training.data.feature_cache import CacheFileError, cache_path, load_cached_features, read_cache_header
from training.distributed import device_flag
from training.data.sav import SAVFormatError, VideoFrameReader, check_video_matches, find_videos, load_annotation
from training.frame_dataset import read_degraded_frames
from training.concept_metrics import ConceptMasklet, PhrasePair, concept_metrics
from training.metrics import assign_predictions, evaluated_frames, score_video

CONDITIONS = ("memory_off", "memory_on", "memory_on_student_features", "memory_on_other_video")
DEFAULT_THRESHOLD = 0.5
PROMPTS_PER_BATCH = 3  # prompts decoded together (x 4 conditions): the batch the eval used before negatives
RULES = ("threshold", "top1")  # the first is the primary rule (SAM3's); "top1" is a labelled diagnostic


@dataclass(frozen=True)
class ConditionScore:
    jf: float  # 0-100, mean over objects
    j: float
    f: float
    j_degraded: float  # mean J over (object, degraded evaluated frame) pairs; nan without degraded frames
    j_clean: float


@dataclass(frozen=True)
class MemoryEvalResult:
    """``scores[rule][condition]``; ``per_video[rule][video id][condition]`` is that video's J&F.
    ``rules[0]`` is the primary instance rule."""

    rules: tuple[str, ...]
    scores: dict[str, dict[str, ConditionScore]]
    per_video: dict[str, dict[str, dict[str, float]]]
    skipped: dict[str, str]  # video id -> reason
    num_objects: int
    num_frames: int  # evaluated frames over all videos
    threshold: float
    wall_time_s: float
    # condition -> SAM3's concept metrics (training.concept_metrics.ConceptResult.to_dict() without per-pair
    # rows), primary rule, over every (held-out video, phrase) pair: positive and negative prompts
    concept: dict[str, dict] | None = None

    @property
    def conditions(self) -> dict[str, ConditionScore]:
        """Scores under the primary rule."""
        return self.scores[self.rules[0]]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _VideoScores:
    j: dict[tuple[str, str], np.ndarray]  # (rule, condition) -> [O]
    f: dict[tuple[str, str], np.ndarray]
    j_frames: dict[tuple[str, str], np.ndarray]  # (rule, condition) -> [O, E] J per evaluated frame
    degraded: np.ndarray  # [E] bool
    pairs: dict[str, list[PhrasePair]]  # condition -> one (video, phrase) pair per prompt, primary rule


class _PromptTracks:
    """One prompt's instances over the evaluated frames, linked into masklets by the runtime's tracker."""

    def __init__(self) -> None:
        self.state = TrackerState()
        self.frames: list[dict[int, tuple[np.ndarray, float]]] = []  # per frame: obj_id -> (mask, score)

    def add(self, masks: np.ndarray, scores: np.ndarray) -> None:
        self.state, obj_ids = update_tracks(self.state, ["p"] * len(masks), list(masks), TrackerConfig())
        self.frames.append({i: (m, float(s)) for i, m, s in zip(obj_ids, masks, scores)})


def _rle_or_none(mask: np.ndarray) -> dict | None:
    return encode_rle(mask) if mask.any() else None


def _phrase_pair(video_id: str, prompt: str, gt: np.ndarray, objects: list[int], tracks: _PromptTracks) -> PhrasePair:
    """gt [O, E, H, W] on the evaluated frames; a masklet's score is its mean instance score."""
    ground_truth = tuple(ConceptMasklet(frames=tuple(_rle_or_none(m) for m in gt[o])) for o in objects
                         if gt[o].any())  # an object absent at every evaluated frame is not there to find
    obj_ids = sorted({i for frame in tracks.frames for i in frame})
    predicted = tuple(ConceptMasklet(
        frames=tuple(_rle_or_none(frame[i][0]) if i in frame else None for frame in tracks.frames),
        score=float(np.mean([frame[i][1] for frame in tracks.frames if i in frame]))) for i in obj_ids)
    return PhrasePair(video_id, prompt, gt.shape[1], ground_truth, predicted)


def _instances(mask_logits: torch.Tensor, query_prob: torch.Tensor, presence_prob: torch.Tensor, threshold: float,
               size: tuple[int, int], rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the predicted instances, bool [n, H, W] at the video size, and their scores [n].

    mask_logits [Q, h, w]; query_prob [Q]; presence_prob scalar tensor. "threshold": queries with
    query_prob * presence_prob > threshold. "top1": those, plus the best query whenever
    presence_prob > threshold (a concept judged present always yields at least one instance).
    """
    scores = query_prob * presence_prob  # [Q]
    keep = scores > threshold
    if rule == "top1" and presence_prob > threshold:
        keep[scores.argmax()] = True
    if not keep.any():
        return np.zeros((0, *size), dtype=bool), np.zeros(0)
    upsampled = F.interpolate(mask_logits[keep][None], size=size, mode="bilinear", align_corners=False)[0]
    return (upsampled > 0).cpu().numpy(), scores[keep].float().cpu().numpy()  # [n, H, W], [n]


def _match(gt: np.ndarray, pred: np.ndarray) -> list[np.ndarray]:
    """One predicted mask (or an empty one) per ground-truth object of one category at one frame.

    gt bool [m, H, W]; pred bool [n, H, W]."""
    empty = np.zeros(gt.shape[1:], dtype=bool)
    if pred.shape[0] == 0 or gt.shape[0] == 0:  # no instance, or a negative prompt (no object)
        return [empty] * gt.shape[0]
    gt_flat, pred_flat = gt.reshape(gt.shape[0], -1), pred.reshape(pred.shape[0], -1)
    inter = gt_flat.astype(np.float32) @ pred_flat.T.astype(np.float32)  # [m, n]
    union = gt_flat.sum(1)[:, None] + pred_flat.sum(1)[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    empty_j = (gt_flat.sum(1) == 0).astype(np.float64)  # J of an empty prediction: 1 iff absent
    assignment = assign_predictions(iou, empty_j, np.ones(iou.shape, dtype=bool))
    return [empty if a is None else pred[a] for a in assignment]


def _memory(features: list[torch.Tensor], query_idx: int, slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[T, C, h, w] memory and [T] mask from per-frame features: slot T-1 = frame query_idx - 1.
    Indices past the end of ``features`` wrap around (used by the other-video control)."""
    memory = torch.zeros(slots, *features[0].shape)
    mask = torch.zeros(slots, dtype=torch.bool)
    for slot in range(slots):
        source = query_idx - slots + slot
        if source >= 0:
            memory[slot], mask[slot] = features[source % len(features)].float().cpu(), True
    return memory, mask


def _cached_features(cache_dir: Path, video_id: str, annotation) -> list[torch.Tensor]:
    """K x [C, h, w] cached features of one video's annotated frames, in annotation order."""
    header = read_cache_header(cache_path(cache_dir, video_id))
    return list(load_cached_features(header, annotation.annotated_frame_indices()))


def check_shared_image_model(models: list, names: list[str]) -> None:
    """Models scored together must differ only in their memory modules (the video stages of one image
    student): everything before the memory enters, and memory off, is then computed once for all of them."""
    def frozen(model) -> dict[str, torch.Tensor]:
        return {k: v for k, v in model.state_dict().items() if not k.startswith(VIDEO_TRAINABLE_MODULES)}

    reference = frozen(models[0])
    for model, name in zip(models[1:], names[1:]):
        if model.config.image_size != models[0].config.image_size or \
                model.config.memory.context_frames != models[0].config.memory.context_frames:
            raise ValueError(f"{name}: image size or memory context frames differ from {names[0]}'s")
        other = frozen(model)
        differing = sorted(set(reference) ^ set(other)) or [
            k for k in reference if reference[k].shape != other[k].shape or not torch.equal(reference[k], other[k])]
        if differing:
            raise ValueError(f"{name}: differs from {names[0]} outside the memory modules ({differing[0]}); "
                             "models scored together must share their image student")


@torch.inference_mode()
def _evaluate_video(models: list, files, cache_dir: Path, control_files, tokenizer: PromptTokenizer, threshold: float,
                    rules: tuple[str, ...], device: torch.device, max_negative_prompts: int | None,
                    conditions: tuple[str, ...] = CONDITIONS) -> list[_VideoScores]:
    """One ``_VideoScores`` per model. ``control_files``: the video whose cached features make the other-video
    control (None: this video's own, reversed).

    The models share everything but their memory modules (``check_shared_image_model``), so the image and
    text encoders, the DETR encoder and memory off (the memory cross-attention then returns its input
    exactly) run once, with ``models[0]``; each model adds only its memory path and heads per condition."""
    shared = models[0]
    annotation = load_annotation(files.json_path)
    num_frames = annotation.num_annotated_frames
    frames = list(evaluated_frames(num_frames))  # raises with fewer than 3 annotated frames
    degraded = read_degraded_frames(files.json_path, num_frames)
    cached = _cached_features(cache_dir, files.video_id, annotation)  # K x [C, h, w]
    control = cached[::-1] if control_files is None else _cached_features(
        cache_dir, control_files.video_id, load_annotation(control_files.json_path))
    categories = list(annotation.categories or [DEFAULT_PROMPT] * annotation.num_objects)
    negatives = sorted(set(annotation.negative_phrases) - set(categories))
    if max_negative_prompts is not None and len(negatives) > max_negative_prompts:  # a fixed, per-video choice
        offset = zlib.crc32(files.video_id.encode()) % len(negatives)
        negatives = sorted((negatives * 2)[offset:offset + max_negative_prompts])
    prompts = sorted(set(categories)) + negatives
    objects_of = {p: [o for o, c in enumerate(categories) if c == p] for p in prompts}
    all_slots = list(range(annotation.num_objects))
    gt = np.stack([annotation.decode_masks(k, all_slots) for k in range(num_frames)], axis=1)  # [O, K, H, W]
    size = (annotation.height, annotation.width)
    slots = shared.config.memory.context_frames
    with_memory = [c for c in conditions if c != "memory_off"]  # the conditions each model decodes itself
    input_ids, attention_mask = tokenizer(prompts)
    all_text = shared.encode_text(input_ids.to(device), attention_mask.to(device))  # [prompts, L, C]
    keys = [(rule, condition) for rule in rules for condition in conditions]
    pred = [{key: np.zeros_like(gt) for key in keys} for _ in models]
    tracks = [{(c, p): _PromptTracks() for c in conditions for p in prompts} for _ in models]  # primary rule
    no_memory = torch.zeros(1, slots, *cached[0].shape, device=device)
    no_memory_tokens = shared.encode_memory(no_memory, torch.zeros(1, slots, dtype=torch.bool, device=device))
    student: list[torch.Tensor] = []

    def record(model_index: int, condition: str, out, row: int, prompt: str, k: int) -> None:
        query_prob, presence_prob = out.pred_logits[row].sigmoid(), out.presence_logits[row, 0].sigmoid()
        for rule in rules:
            instances, scores = _instances(out.pred_masks[row], query_prob, presence_prob, threshold, size, rule)
            if rule == rules[0]:
                tracks[model_index][condition, prompt].add(instances, scores)
            objs = objects_of[prompt]
            for obj, mask in zip(objs, _match(gt[objs, k], instances)):
                pred[model_index][rule, condition][obj, k] = mask

    with VideoFrameReader(files.video_path, size) as reader:
        check_video_matches(reader, annotation)
        for k in range(frames[-1] + 1):
            pixels = torch.from_numpy(preprocess_frame(reader.read_frame(annotation.video_frame(k)),
                                                       shared.config.image_size))[None].to(device)
            vision = shared.encode_image(pixels)
            if k not in frames:
                student.append(vision.memory_features[0])
                continue
            sources = {"memory_on": cached, "memory_on_student_features": student, "memory_on_other_video": control}
            memory_tokens, has_memory = [], None  # per model [conditions with memory, 64, C]; [conditions]
            if with_memory:  # once per frame, for every prompt chunk
                memories = [_memory(sources[c], k, slots) for c in with_memory]
                memory = torch.stack([m for m, _ in memories]).to(device)  # [conditions, T, C, h, w]
                memory_mask = torch.stack([m for _, m in memories]).to(device)
                memory_tokens = [model.encode_memory(memory, memory_mask) for model in models]
                has_memory = memory_mask.any(dim=1)
            # Prompts in chunks: the heads' attention memory grows with the batch (conditions x prompts).
            for start in range(0, len(prompts), PROMPTS_PER_BATCH):
                chunk = prompts[start:start + PROMPTS_PER_BATCH]
                text = TextFeatures(features=all_text.features[start:start + len(chunk)],
                                    mask=all_text.mask[start:start + len(chunk)])
                prompt, encoder_tokens = shared.encode_prompt(vision, text)  # [chunk, N, C], for every condition
                if "memory_off" in conditions:
                    out = shared.decode_with_memory(vision, prompt, encoder_tokens, no_memory_tokens,
                                                    torch.zeros(1, dtype=torch.bool, device=device))
                    for m in range(len(models)):
                        for p, name in enumerate(chunk):
                            record(m, "memory_off", out, p, name, k)
                if not with_memory:
                    continue
                repeats = len(with_memory)  # batch rows: condition-major, prompt-minor
                rows_prompt = TextFeatures(features=prompt.features.repeat(repeats, 1, 1),
                                           mask=prompt.mask.repeat(repeats, 1))
                for m, model in enumerate(models):
                    out = model.decode_with_memory(
                        vision, rows_prompt, encoder_tokens.repeat(repeats, 1, 1),
                        memory_tokens[m].repeat_interleave(len(chunk), 0),
                        has_memory.repeat_interleave(len(chunk), 0))
                    for c, condition in enumerate(with_memory):
                        for p, name in enumerate(chunk):
                            record(m, condition, out, c * len(chunk) + p, name, k)
            student.append(vision.memory_features[0])
    results = []
    for m in range(len(models)):
        result = _VideoScores(j={}, f={}, j_frames={}, degraded=np.array([k in degraded for k in frames]),
                              pairs={c: [_phrase_pair(files.video_id, p, gt[:, frames], objects_of.get(p, []),
                                                      tracks[m][c, p]) for p in prompts] for c in conditions})
        for key in keys:
            score = score_video(gt, pred[m][key])
            result.j[key], result.f[key] = score.j, score.f
            inter = (gt[:, frames] & pred[m][key][:, frames]).sum((2, 3))  # [O, E]
            union = (gt[:, frames] | pred[m][key][:, frames]).sum((2, 3))
            result.j_frames[key] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        results.append(result)
    return results


def evaluate_memory(model, sav_root: Path | str, cache_dir: Path | str, threshold: float = DEFAULT_THRESHOLD,
                    device: str = "cpu", annotation_type: str = "manual", show_progress: bool = True,
                    rules: tuple[str, ...] = RULES, max_negative_prompts: int | None = None,
                    conditions: tuple[str, ...] = CONDITIONS) -> MemoryEvalResult:
    """Score ``model`` on every video under ``sav_root`` under the memory ``conditions`` (default: all four;
    a study may leave out ``memory_on_student_features``, which differs from ``memory_on`` only by the
    cache's float16 rounding when the cache's teacher is the student itself).

    ``rules``: which queries are instances (see ``_instances``), each scored from the same forward
    passes; the first is the primary one. ``max_negative_prompts``: at most this many of a video's absent
    phrases are prompted (a fixed choice per video; None: all) -- each costs a decode per evaluated frame.

    Bad videos (unreadable files, missing cache, fewer than 3 annotated frames) are skipped and listed.
    """
    return evaluate_memory_models([model], sav_root, cache_dir, threshold, device, annotation_type, show_progress,
                                  rules, max_negative_prompts, conditions)[0]


def evaluate_memory_models(models: list, sav_root: Path | str, cache_dir: Path | str,
                           threshold: float = DEFAULT_THRESHOLD, device: str = "cpu", annotation_type: str = "manual",
                           show_progress: bool = True, rules: tuple[str, ...] = RULES,
                           max_negative_prompts: int | None = None, conditions: tuple[str, ...] = CONDITIONS,
                           names: list[str] | None = None) -> list[MemoryEvalResult]:
    """``evaluate_memory`` of several video-stage models of one image student in one pass (a recipe study's
    seeds and candidates), one result each, as each would score alone. What they share runs once
    (``_evaluate_video``); a model that differs outside its memory modules is refused (``names``, for that
    message: one per model). ``wall_time_s`` is the whole pass's."""
    if not rules or any(rule not in RULES for rule in rules):
        raise ValueError(f"rules must be a non-empty subset of {RULES}, got {rules!r}")
    if not conditions or any(c not in CONDITIONS for c in conditions) or len(set(conditions)) < len(conditions):
        raise ValueError(f"conditions must be distinct names out of {CONDITIONS}, got {conditions!r}")
    if not models:
        raise ValueError("no model to evaluate")
    names = names or [f"model {i}" for i in range(len(models))]
    check_shared_image_model(models, names)
    conditions = tuple(c for c in CONDITIONS if c in conditions)  # the table's fixed order
    started = time.perf_counter()
    device = torch.device(device)
    models = [model.to(device).eval() for model in models]
    tokenizer = PromptTokenizer(models[0])
    per_video: list[dict[str, dict[str, dict[str, float]]]] = [{} for _ in models]
    skipped: dict[str, str] = {}
    scores: list[list[_VideoScores]] = [[] for _ in models]
    videos = list(find_videos(sav_root, annotation_type))
    if not videos:
        raise ValueError(f"{sav_root}: no SA-V videos (*.mp4 with *_{annotation_type}.json) in this folder or below it")
    for index, files in enumerate(tqdm(videos, desc="memory eval", unit="video", disable=not show_progress)):
        control_files = videos[(index + 1) % len(videos)] if len(videos) > 1 else None
        try:
            video = _evaluate_video(models, files, Path(cache_dir), control_files, tokenizer, threshold, tuple(rules),
                                    device, max_negative_prompts, conditions)
        except (SAVFormatError, CacheFileError, ValueError) as error:
            skipped[files.video_id] = str(error)
            continue
        for m, video_scores in enumerate(video):
            scores[m].append(video_scores)
            for rule in rules:
                per_video[m].setdefault(rule, {})[files.video_id] = {
                    c: float(100 * np.nanmean((video_scores.j[rule, c] + video_scores.f[rule, c]) / 2))
                    for c in conditions}
    if not scores[0]:
        raise ValueError(f"{sav_root}: no video could be evaluated: {skipped}")
    wall_time_s = time.perf_counter() - started
    return [_summarise(model_scores, model_per_video, skipped, tuple(rules), conditions, threshold, wall_time_s)
            for model_scores, model_per_video in zip(scores, per_video)]


def _summarise(scores: list[_VideoScores], per_video: dict, skipped: dict[str, str], rules: tuple[str, ...],
               conditions: tuple[str, ...], threshold: float, wall_time_s: float) -> MemoryEvalResult:
    """One model's result from its per-video scores."""
    results: dict[str, dict[str, ConditionScore]] = {}
    for rule in rules:
        for condition in conditions:
            key = (rule, condition)
            j = np.concatenate([s.j[key] for s in scores])  # NaN: object unscored (official SA-V rule)
            j, f = j[~np.isnan(j)], np.concatenate([s.f[key] for s in scores])[~np.isnan(j)]
            j_degraded = np.concatenate([s.j_frames[key][:, s.degraded].ravel() for s in scores])
            j_clean = np.concatenate([s.j_frames[key][:, ~s.degraded].ravel() for s in scores])
            results.setdefault(rule, {})[condition] = ConditionScore(
                jf=float(100 * np.mean((j + f) / 2)), j=float(100 * j.mean()), f=float(100 * f.mean()),
                j_degraded=float(100 * j_degraded.mean()) if j_degraded.size else float("nan"),
                j_clean=float(100 * j_clean.mean()) if j_clean.size else float("nan"))
    concept = {}
    for condition in conditions:
        summary = concept_metrics([pair for video in scores for pair in video.pairs[condition]]).to_dict()
        summary.pop("per_pair")
        concept[condition] = summary
    return MemoryEvalResult(rules=rules, scores=results, per_video=per_video, skipped=dict(skipped),
                            concept=concept,
                            num_objects=sum(int(np.count_nonzero(~np.isnan(s.j[rules[0], conditions[0]])))
                                            for s in scores),
                            num_frames=sum(len(s.degraded) for s in scores), threshold=threshold,
                            wall_time_s=wall_time_s)


def format_memory_table(result: MemoryEvalResult) -> str:
    lines = [f"{'rule':<10} {'condition':<28} {'J&F':>6} {'J':>6} {'F':>6} {'J degraded':>11} {'J clean':>8}"]
    for rule in result.rules:
        for name, score in result.scores[rule].items():
            lines.append(f"{rule:<10} {name:<28} {score.jf:6.1f} {score.j:6.1f} {score.f:6.1f} "
                         f"{score.j_degraded:11.1f} {score.j_clean:8.1f}")
    if result.concept:
        lines.append(f"{'concept metrics (' + result.rules[0] + ')':<39} {'cgF1':>6} {'IL_MCC':>7} {'pmF1':>6} "
                     f"{'pHOTA':>6}")
        for name, c in result.concept.items():
            lines.append(f"{name:<39} {c['cgf1']:6.1f} {c['il_mcc']:7.1f} {c['positive_micro_f1']:6.1f} "
                         f"{c['phota']:6.1f}")
        lines.append(f"(concept metrics over {next(iter(result.concept.values()))['num_pairs']} (video, phrase) "
                     f"pairs, {next(iter(result.concept.values()))['num_positive_pairs']} positive)")
    lines.append(f"({len(result.per_video[result.rules[0]])} held-out videos, {result.num_objects} objects, "
                 f"{result.num_frames} "
                 f"evaluated frames; skipped {len(result.skipped)})")
    lines += [f"skipped {video_id}: {reason}" for video_id, reason in result.skipped.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description="J&F with memory off / on (cached) / on (student features) / on (another video's memory).")
    parser.add_argument("--model", type=Path, nargs="+", required=True,
                        help="EfficientSAM3 checkpoint directory; several: video-stage models of one image student, "
                             "scored in one pass")
    parser.add_argument("--sav-root", type=Path, required=True, help="held-out SA-V train-layout folder")
    parser.add_argument("--cache-dir", type=Path, required=True, help="feature cache of those videos")
    parser.add_argument("--threshold", type=probability, default=DEFAULT_THRESHOLD)
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES), help="first = primary")
    parser.add_argument("--device", type=device_flag, default="cpu")
    parser.add_argument("--max-negative-prompts", type=non_negative_int,
                        help="absent phrases prompted per video (default: all)")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS),
                        help="memory conditions to score (default: all four)")
    parser.add_argument("--out", type=Path, help="write the result as JSON here (several models: an object from "
                                                 "each --model path to its result)")
    args = parser.parse_args(argv)
    from efficient_sam3 import EfficientSam3Model

    names = [str(path) for path in args.model]
    if len(set(names)) < len(names):
        return fail(ValueError(f"--model: a checkpoint is named twice ({names})"))
    try:
        if args.out is not None:
            check_creatable(args.out, "--out file")
        models = [EfficientSam3Model.from_pretrained(path) for path in args.model]
        results = evaluate_memory_models(models, args.sav_root, args.cache_dir, args.threshold, args.device,
                                         rules=tuple(args.rules), max_negative_prompts=args.max_negative_prompts,
                                         conditions=tuple(args.conditions), names=names)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            document = results[0].to_dict() if len(results) == 1 else {
                "models": {name: result.to_dict() for name, result in zip(names, results)}}
            write_json_atomic(args.out, document, indent=2)
    except (OSError, ValueError) as error:
        return fail(error)
    for name, result in zip(names, results):
        if len(results) > 1:
            print(f"== {name}")
        print(format_memory_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
