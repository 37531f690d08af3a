"""The synthetic crowd camera: face photos walking across a street, with ground truth.

Deterministic for a seed: the same cast, seed and frame number give the same pixels and the
same truth. Each walker keeps one face width (48-160 px by default) for its whole walk, so a
test can say exactly who walked past large enough to be recognised. The photos are read from
a folder of identity folders in place and only ever held in memory.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from services.engine.face.errors import ImageError
from services.engine.face.imageio import read_image_file

# In the LFW layout (250x250, deep-funnelled) the labelled face spans roughly this box.
_LFW_FACE = (78, 72, 172, 180)  # x1, y1, x2, y2
_SPRITE_CROP = (45, 40, 205, 215)  # head and a little context around the face


@dataclass(frozen=True)
class CastMember:
    identity: str
    image_path: Path


@dataclass(frozen=True)
class CrowdConfig:
    width: int = 1280
    height: int = 720
    fps: float = 10.0
    seed: int = 7
    max_walkers: int = 4
    min_face_width: int = 48
    max_face_width: int = 160
    min_walk_s: float = 4.0
    max_walk_s: float = 7.0
    spawn_interval_s: float = 1.5


@dataclass(frozen=True)
class Walker:
    index: int
    identity: str
    image_path: Path
    start_frame: int
    frames: int
    face_width: int
    lane_y: int
    left_to_right: bool

    def position(self, frame: int, width: int) -> float | None:
        """Centre x at ``frame``, or None when the walker is not in the scene."""
        t = (frame - self.start_frame) / self.frames
        if not 0.0 <= t <= 1.0:
            return None
        margin = self.face_width
        x = -margin + t * (width + 2 * margin)
        return x if self.left_to_right else width - x


class CrowdScene:
    """Renders frame ``seq`` of the scene and says who is where."""

    def __init__(self, cast: list[CastMember], config: CrowdConfig = CrowdConfig()) -> None:
        if not cast:
            raise ValueError("the crowd needs at least one cast member")
        self.config = config
        self.cast = list(cast)
        self.background = self._background()
        self._sprites: dict[Path, np.ndarray] = {}
        self._walkers: list[Walker] = []
        rng = random.Random(config.seed)
        self._order = list(range(len(cast)))
        rng.shuffle(self._order)
        self._rng = rng

    # -- schedule -------------------------------------------------------------------------

    def walkers_until(self, frame: int) -> list[Walker]:
        """Every walker that has entered by ``frame`` (generated lazily, deterministically)."""
        c = self.config
        spawn_every = max(1, round(c.spawn_interval_s * c.fps))
        while len(self._walkers) * spawn_every <= frame:
            i = len(self._walkers)
            member = self.cast[self._order[i % len(self.cast)]]
            lanes = c.max_walkers
            lane = i % lanes
            lane_height = c.height / lanes
            self._walkers.append(
                Walker(
                    index=i,
                    identity=member.identity,
                    image_path=member.image_path,
                    start_frame=i * spawn_every,
                    frames=max(2, round(self._rng.uniform(c.min_walk_s, c.max_walk_s) * c.fps)),
                    face_width=self._rng.randint(c.min_face_width, c.max_face_width),
                    lane_y=int(lane_height * (lane + 0.5)),
                    left_to_right=self._rng.random() < 0.5,
                )
            )
        return self._walkers

    def visible(self, frame: int) -> list[tuple[Walker, float]]:
        return [(w, x) for w in self.walkers_until(frame) if (x := w.position(frame, self.config.width)) is not None]

    # -- pixels ---------------------------------------------------------------------------

    def render(self, frame: int) -> tuple[np.ndarray, list[dict]]:
        """(BGR image, truth) for one frame. Truth boxes are the face, clipped to the frame."""
        image = self.background.copy()
        truth = []
        for walker, x in sorted(self.visible(frame), key=lambda wx: wx[0].face_width):
            box = self._paste(image, walker, x, frame)
            if box is not None:
                truth.append({"identity": walker.identity, "walker": walker.index, "face_width": walker.face_width, "box": box})
        return image, truth

    def _sprite(self, path: Path) -> np.ndarray:
        sprite = self._sprites.get(path)
        if sprite is None:
            try:
                image = read_image_file(path)  # header and pixel limits checked before decoding
            except (ImageError, OSError) as exc:
                raise ValueError(f"cannot read cast photo {path.name}: {exc}") from None
            image = cv2.resize(image, (250, 250)) if image.shape[:2] != (250, 250) else image
            x1, y1, x2, y2 = _SPRITE_CROP
            sprite = image[y1:y2, x1:x2]
            self._sprites[path] = sprite
        return sprite

    def _paste(self, image: np.ndarray, walker: Walker, centre_x: float, frame: int) -> list[float] | None:
        sprite = self._sprite(walker.image_path)
        face_px = _LFW_FACE[2] - _LFW_FACE[0]
        scale = walker.face_width / face_px
        h, w = sprite.shape[:2]
        sw, sh = max(2, round(w * scale)), max(2, round(h * scale))
        scaled = cv2.resize(sprite, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        # A small bob as the walker steps keeps frames from being identical.
        bob = 3.0 * math.sin(frame * 0.9 + walker.index)
        left = round(centre_x - sw / 2)
        top = round(walker.lane_y - sh / 2 + bob)
        mask = np.zeros((sh, sw), np.float32)
        cv2.ellipse(mask, (sw // 2, sh // 2), (max(1, int(sw * 0.46)), max(1, int(sh * 0.48))), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, sw * 0.04))[..., None]
        x0, y0 = max(0, left), max(0, top)
        x1, y1 = min(image.shape[1], left + sw), min(image.shape[0], top + sh)
        if x1 <= x0 or y1 <= y0:
            return None
        region = image[y0:y1, x0:x1].astype(np.float32)
        part = scaled[y0 - top : y1 - top, x0 - left : x1 - left].astype(np.float32)
        alpha = mask[y0 - top : y1 - top, x0 - left : x1 - left]
        image[y0:y1, x0:x1] = (alpha * part + (1 - alpha) * region).astype(np.uint8)
        fx1 = left + (_LFW_FACE[0] - _SPRITE_CROP[0]) * scale
        fy1 = top + (_LFW_FACE[1] - _SPRITE_CROP[1]) * scale
        fx2 = left + (_LFW_FACE[2] - _SPRITE_CROP[0]) * scale
        fy2 = top + (_LFW_FACE[3] - _SPRITE_CROP[1]) * scale
        clipped = [max(0.0, fx1), max(0.0, fy1), min(float(image.shape[1]), fx2), min(float(image.shape[0]), fy2)]
        if clipped[2] - clipped[0] < 0.5 * (fx2 - fx1):
            return None  # mostly out of frame: not a face anyone could recognise
        return [round(v, 1) for v in clipped]

    def _background(self) -> np.ndarray:
        """A plain street: sky-to-pavement gradient, building blocks, mild sensor noise."""
        c = self.config
        rng = np.random.default_rng(c.seed)
        y = np.linspace(0, 1, c.height, dtype=np.float32)[:, None]
        base = np.empty((c.height, c.width, 3), np.float32)
        base[..., 0] = 150 - 60 * y
        base[..., 1] = 140 - 50 * y
        base[..., 2] = 120 - 30 * y
        for _ in range(12):
            x0 = int(rng.integers(0, c.width))
            w = int(rng.integers(60, 220))
            top = int(rng.integers(0, c.height // 3))
            colour = rng.integers(60, 170, size=3).astype(np.float32)
            base[top : c.height // 2, x0 : x0 + w] = colour
        base += rng.normal(0, 4, base.shape).astype(np.float32)
        return np.clip(base, 0, 255).astype(np.uint8)


def cast_from_folder(data_dir: Path, identities: list[str], photo_index: int) -> list[CastMember]:
    """One photo per identity: the ``photo_index``-th by name (0 = first), or the last available."""
    cast = []
    for identity in identities:
        photos = sorted(p for p in (data_dir / identity).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if photos:
            cast.append(CastMember(identity, photos[min(photo_index, len(photos) - 1)]))
    return cast
