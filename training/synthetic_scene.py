"""Synthetic scenes: solid-colour shapes that move, rotate, scale, enter/leave and occlude.

A `Scene` is sampled from a seeded generator and rendered frame by frame to RGB uint8 plus
the visible (modal) mask of every object. Masks are exactly the pixels painted with the
object's colour, so ground truth and pixels agree before video compression.

To make temporal context useful, some annotated frames are degraded after rendering
(heavy blur + noise, or a grey rectangle over one object) while their ground-truth masks
stay the true object masks. No two degraded annotated frames are adjacent, so the most
recent context frame of a degraded query is always clean.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.data.sav import ANNOTATION_STRIDE

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross")
COLOURS_RGB = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 225),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 190),
    "cyan": (40, 205, 215),
}
FRAME_SIZES = ((320, 240), (256, 192), (288, 224), (240, 320), (224, 288), (352, 256))  # (width, height)
DROPOUT_GREY = 128
POLYGON_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertex positions


@dataclass(frozen=True)
class SceneConfig:
    """Ranges the scene sampler draws from. Sizes are object diameters as a fraction of the short side."""

    frame_sizes: tuple[tuple[int, int], ...] = FRAME_SIZES
    min_frames: int = 48
    max_frames: int = 90
    min_objects: int = 1
    max_objects: int = 4
    min_size: float = 0.08
    max_size: float = 0.25
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS_RGB)
    min_degraded_fraction: float = 0.3
    max_degraded_fraction: float = 0.5
    clean_leading_annotated: int = 2  # annotated frames 0..1 are never degraded


@dataclass(frozen=True)
class ObjectTrack:
    """One object's appearance and smooth motion; `pose(t)` gives its state at video frame t."""

    shape: str
    colour: str
    rgb: tuple[int, int, int]
    start_xy: tuple[float, float]
    end_xy: tuple[float, float]
    wobble: tuple[float, float, float]  # amplitude px, cycles per video, phase
    radius: float  # circumradius in px at scale 1
    scale_wobble: tuple[float, float, float]  # relative amplitude, cycles per video, phase
    angle0: float  # degrees
    angular_velocity: float  # degrees per frame
    num_frames: int

    @property
    def category(self) -> str:
        return f"{self.colour} {self.shape}"

    def pose(self, frame_idx: int) -> tuple[float, float, float, float]:
        """(centre x, centre y, circumradius, angle in degrees) at `frame_idx`."""
        progress = frame_idx / max(self.num_frames - 1, 1)
        (x0, y0), (x1, y1) = self.start_xy, self.end_xy
        direction = np.array([x1 - x0, y1 - y0])
        normal = np.array([-direction[1], direction[0]]) / (np.linalg.norm(direction) + 1e-6)
        amplitude, cycles, phase = self.wobble
        offset = amplitude * np.sin(2 * np.pi * cycles * progress + phase)
        centre = np.array([x0, y0]) + progress * direction + offset * normal
        scale_amp, scale_cycles, scale_phase = self.scale_wobble
        radius = self.radius * (1.0 + scale_amp * np.sin(2 * np.pi * scale_cycles * progress + scale_phase))
        angle = self.angle0 + self.angular_velocity * frame_idx
        return float(centre[0]), float(centre[1]), float(radius), float(angle)


@dataclass(frozen=True)
class Degradation:
    """What happens to annotated frame `annotated_idx`: "blur" (+ noise) or "dropout" of one object."""

    annotated_idx: int
    kind: str
    target_slot: int  # object covered by a dropout rectangle; -1 for blur
    noise_seed: int


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    num_frames: int
    background: np.ndarray  # uint8 [H, W, 3] RGB
    objects: tuple[ObjectTrack, ...]  # bottom to top (later objects occlude earlier ones)
    degradations: tuple[Degradation, ...]
    vocabulary: tuple[str, ...] = ()  # every "colour shape" phrase the sampler could draw

    @property
    def absent_phrases(self) -> tuple[str, ...]:
        """Vocabulary phrases no object of this scene has: the video's negative prompts."""
        present = {track.category for track in self.objects}
        return tuple(phrase for phrase in self.vocabulary if phrase not in present)

    @property
    def num_annotated_frames(self) -> int:
        return (self.num_frames - 1) // ANNOTATION_STRIDE + 1


def sample_scene(rng: np.random.Generator, config: SceneConfig) -> Scene:
    """Draw one scene; every object is visible in at least one annotated frame."""
    width, height = config.frame_sizes[rng.integers(len(config.frame_sizes))]
    num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    while num_frames % ANNOTATION_STRIDE == 0:
        num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    background = _sample_background(rng, height, width)
    num_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    objects = []
    for _ in range(num_objects):
        for _attempt in range(100):  # an object never in view is left out of the JSON by the writer
            track = _sample_track(rng, config, width, height, num_frames)
            if _visible_in_some_annotated_frame(track, width, height):
                break
        objects.append(track)
    scene = Scene(width, height, num_frames, background, tuple(objects), ())
    return Scene(width, height, num_frames, background, tuple(objects), _sample_degradations(rng, config, scene),
                 vocabulary=scene_vocabulary(config))


def scene_vocabulary(config: SceneConfig) -> tuple[str, ...]:
    """All "colour shape" phrases of ``config``, colour-major."""
    return tuple(f"{colour} {shape}" for colour in config.colours for shape in config.shapes)


def _sample_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Low-saturation grey with a smooth low-frequency texture."""
    base = rng.uniform(80, 170) + rng.uniform(-12, 12, size=3)
    coarse = rng.uniform(-18, 18, size=(4, 5, 1)).astype(np.float32)
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]  # [H, W, 1]
    return np.clip(base + texture, 0, 255).astype(np.uint8)


def _sample_track(
    rng: np.random.Generator, config: SceneConfig, width: int, height: int, num_frames: int
) -> ObjectTrack:
    short_side = min(width, height)
    diameter = rng.uniform(config.min_size, config.max_size) * short_side
    radius = diameter / 2
    scale_amp = min(0.15, config.max_size * short_side / diameter - 1, 1 - config.min_size * short_side / diameter)
    kind = rng.choice(["inside", "inside", "inside", "enter", "leave"])
    start = _point_inside(rng, width, height, radius)
    end = _point_inside(rng, width, height, radius)
    if kind == "enter":
        start = _point_outside(rng, width, height, radius)
    elif kind == "leave":
        end = _point_outside(rng, width, height, radius)
    shape = config.shapes[rng.integers(len(config.shapes))]
    colour = config.colours[rng.integers(len(config.colours))]
    return ObjectTrack(
        shape=shape,
        colour=colour,
        rgb=COLOURS_RGB[colour],
        start_xy=start,
        end_xy=end,
        wobble=(rng.uniform(0, 0.04 * short_side), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)),
        radius=radius,
        scale_wobble=(rng.uniform(0, max(scale_amp, 0.0)), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)),
        angle0=rng.uniform(0, 360),
        angular_velocity=rng.uniform(-3, 3),
        num_frames=num_frames,
    )


def _point_inside(rng: np.random.Generator, width: int, height: int, radius: float) -> tuple[float, float]:
    return float(rng.uniform(radius, width - radius)), float(rng.uniform(radius, height - radius))


def _point_outside(rng: np.random.Generator, width: int, height: int, radius: float) -> tuple[float, float]:
    """A centre just beyond one of the four edges, so the object is fully out of view."""
    x, y = _point_inside(rng, width, height, radius)
    edge = rng.integers(4)
    margin = 1.5 * radius
    if edge == 0:
        return -margin, y
    if edge == 1:
        return width + margin, y
    if edge == 2:
        return x, -margin
    return x, height + margin


def _visible_in_some_annotated_frame(track: ObjectTrack, width: int, height: int) -> bool:
    for frame_idx in range(0, track.num_frames, ANNOTATION_STRIDE):
        if render_object_mask(track, frame_idx, height, width).any():
            return True
    return False


def _sample_degradations(rng: np.random.Generator, config: SceneConfig, scene: Scene) -> tuple[Degradation, ...]:
    """Non-adjacent annotated frames after the clean lead-in; 30-50% of the annotated frames."""
    num_annotated = scene.num_annotated_frames
    target = int(round(rng.uniform(config.min_degraded_fraction, config.max_degraded_fraction) * num_annotated))
    chosen: list[int] = []
    for annotated_idx in rng.permutation(np.arange(config.clean_leading_annotated, num_annotated)):
        if len(chosen) >= target:
            break
        if all(abs(int(annotated_idx) - other) > 1 for other in chosen):
            chosen.append(int(annotated_idx))
    degradations = []
    for annotated_idx in sorted(chosen):
        visible = [
            slot
            for slot, track in enumerate(scene.objects)
            if render_object_mask(track, annotated_idx * ANNOTATION_STRIDE, scene.height, scene.width).any()
        ]
        use_dropout = bool(visible) and rng.random() < 0.5
        target_slot = int(visible[rng.integers(len(visible))]) if use_dropout else -1
        kind = "dropout" if use_dropout else "blur"
        degradations.append(Degradation(annotated_idx, kind, target_slot, int(rng.integers(2**31))))
    return tuple(degradations)


def render_object_mask(track: ObjectTrack, frame_idx: int, height: int, width: int) -> np.ndarray:
    """Full (amodal) mask of one object, bool [H, W]; pixels outside the frame are clipped."""
    centre_x, centre_y, radius, angle = track.pose(frame_idx)
    canvas = np.zeros((height, width), dtype=np.uint8)
    scale = 1 << POLYGON_SHIFT
    if track.shape == "circle":
        centre = (int(round(centre_x * scale)), int(round(centre_y * scale)))
        radius_fixed = int(round(radius * scale))
        cv2.circle(canvas, centre, radius_fixed, 1, thickness=-1, lineType=cv2.LINE_8, shift=POLYGON_SHIFT)
        return canvas.astype(bool)
    unit = _unit_polygon(track.shape)  # [V, 2] at circumradius 1
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    points = unit @ rotation.T * radius + np.array([centre_x, centre_y])  # [V, 2] pixels
    fixed = np.round(points * scale).astype(np.int32)
    cv2.fillPoly(canvas, [fixed], 1, lineType=cv2.LINE_8, shift=POLYGON_SHIFT)
    return canvas.astype(bool)


def _unit_polygon(shape: str) -> np.ndarray:
    if shape in ("square", "triangle", "hexagon"):
        sides = {"square": 4, "triangle": 3, "hexagon": 6}[shape]
        angles = np.pi / 2 + 2 * np.pi * np.arange(sides) / sides
        return np.stack([np.cos(angles), -np.sin(angles)], axis=1)
    if shape == "star":
        angles = np.pi / 2 + np.pi * np.arange(10) / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([radii * np.cos(angles), -radii * np.sin(angles)], axis=1)
    if shape == "cross":
        arm = 0.35
        reach = np.sqrt(1 - arm**2)
        outline = [
            (arm, reach), (arm, arm), (reach, arm), (reach, -arm), (arm, -arm), (arm, -reach),
            (-arm, -reach), (-arm, -arm), (-reach, -arm), (-reach, arm), (-arm, arm), (-arm, reach),
        ]
        return np.array(outline, dtype=np.float64)
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def render_frame(scene: Scene, frame_idx: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean RGB uint8 [H, W, 3] and visible masks bool [num_objects, H, W] at `frame_idx`."""
    frame = scene.background.copy()
    full_masks = np.stack(
        [render_object_mask(track, frame_idx, scene.height, scene.width) for track in scene.objects]
    )  # [O, H, W]
    for track, mask in zip(scene.objects, full_masks):
        frame[mask] = track.rgb
    visible = full_masks.copy()
    covered = np.zeros((scene.height, scene.width), dtype=bool)
    for slot in range(len(scene.objects) - 1, -1, -1):  # top to bottom
        visible[slot] &= ~covered
        covered |= full_masks[slot]
    return frame, visible


def degrade_frame(frame: np.ndarray, degradation: Degradation, full_target_mask: np.ndarray | None) -> np.ndarray:
    """Apply one degradation to an RGB uint8 frame (returns a new frame)."""
    height, width = frame.shape[:2]
    rng = np.random.default_rng(degradation.noise_seed)
    if degradation.kind == "blur":
        sigma = 0.05 * min(height, width)
        blurred = cv2.GaussianBlur(frame, (0, 0), sigmaX=sigma).astype(np.float32)
        noisy = blurred + rng.normal(0, 25, size=frame.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)
    if degradation.kind == "dropout":
        if full_target_mask is None or not full_target_mask.any():
            raise ValueError(f"dropout at annotated frame {degradation.annotated_idx} needs a visible target")
        ys, xs = np.nonzero(full_target_mask)
        margin_x = int(0.15 * (xs.max() - xs.min() + 1)) + 2
        margin_y = int(0.15 * (ys.max() - ys.min() + 1)) + 2
        degraded = frame.copy()
        degraded[
            max(ys.min() - margin_y, 0) : ys.max() + margin_y + 1,
            max(xs.min() - margin_x, 0) : xs.max() + margin_x + 1,
        ] = DROPOUT_GREY
        return degraded
    raise ValueError(f"unknown degradation {degradation.kind!r}")
