"""The registry of 4D shape families, a random-shape factory and rebuilding shapes from provenance."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .deformers import BendingBar, BreathingBlob, TwistingBox
from .errors import ShapeError
from .human import HUMAN_MOTIONS, BodyParams, Human, HumanMotion
from .ranges import MotionRanges
from .shape import DeformedShape, GlobalMotion

__all__ = ["SHAPE_FAMILIES", "FAMILY_MOTIONS", "make_shape", "random_shape", "shape_from_description",
           "turning"]

#: family name -> class; each class has ``random(seed, *, ranges, global_motion, duration, ...)``.
SHAPE_FAMILIES: dict[str, type[DeformedShape]] = {
    "human": Human,
    "bending_bar": BendingBar,
    "twisting_box": TwistingBox,
    "breathing_blob": BreathingBlob,
}

#: family name -> the motion names it can perform.
FAMILY_MOTIONS: dict[str, tuple[str, ...]] = {
    "human": tuple(sorted(HUMAN_MOTIONS)),
    "bending_bar": ("bend",),
    "twisting_box": ("twist",),
    "breathing_blob": ("breathe_bulge",),
}


def _family(name: str) -> type[DeformedShape]:
    if name not in SHAPE_FAMILIES:
        raise ShapeError(f"unknown shape family {name!r}; known: {sorted(SHAPE_FAMILIES)}")
    return SHAPE_FAMILIES[name]


def make_shape(family: str, seed: int, *, motion: str | None = None, ranges: MotionRanges | None = None,
               global_motion: bool = False, duration: float = 2.0) -> DeformedShape:
    """A random shape of ``family`` reproducible from the int ``seed``.

    Args:
        family: a key of ``SHAPE_FAMILIES``.
        seed: non-negative int; the same arguments give the same shape bit for bit.
        motion: for "human", one of ``FAMILY_MOTIONS["human"]`` (random when None); other families
            have a single motion and accept only None or its name.
        ranges: amplitude/speed/global-motion ranges (``MotionRanges()`` when None).
        global_motion: add a random slow yaw and drift.
        duration: natural time range, seconds.

    Raises:
        ShapeError: unknown family or motion, bad seed.
    """
    cls = _family(family)
    if motion is not None and motion not in FAMILY_MOTIONS[family]:
        raise ShapeError(f"family {family!r} has no motion {motion!r}; known: {list(FAMILY_MOTIONS[family])}")
    if cls is Human:
        return Human.random(seed, motion=motion, ranges=ranges, global_motion=global_motion,
                            duration=duration)
    return cls.random(seed, ranges=ranges, global_motion=global_motion, duration=duration)


def random_shape(rng: np.random.Generator, families: Sequence[str] | None = None, *,
                 weights: Sequence[float] | None = None, motions: Sequence[str] | None = None,
                 ranges: MotionRanges | None = None, global_motion: bool = True,
                 duration: float = 2.0) -> DeformedShape:
    """Draw a family (from ``families``, default all, with optional ``weights``), then a shape of it.

    The shape's own seed is drawn from ``rng`` and recorded in ``describe()``, so the shape can be
    rebuilt with ``make_shape(family, seed, ...)``. ``motions`` restricts the human motions drawn.

    Raises:
        ShapeError: unknown family or motion, weights of the wrong length or not summing to > 0.
    """
    if not isinstance(rng, np.random.Generator):
        raise ShapeError(f"random_shape needs a numpy Generator, got {type(rng).__name__}")
    names = list(families) if families is not None else list(SHAPE_FAMILIES)
    if not names:
        raise ShapeError("random_shape: families is empty")
    for name in names:
        _family(name)
    p = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(names),) or np.any(w < 0) or not w.sum() > 0:
            raise ShapeError(f"random_shape: weights must be {len(names)} non-negative numbers with a positive sum")
        p = w / w.sum()
    if motions is not None:
        for m in motions:
            if m not in HUMAN_MOTIONS:
                raise ShapeError(f"unknown human motion {m!r}; known: {sorted(HUMAN_MOTIONS)}")
        if len(motions) == 0:
            raise ShapeError("random_shape: motions is empty")
    family = str(rng.choice(names, p=p))
    seed = int(rng.integers(0, 2**62))
    motion = str(rng.choice(list(motions))) if (motions is not None and family == "human") else None
    return make_shape(family, seed, motion=motion, ranges=ranges, global_motion=global_motion,
                      duration=duration)


_BUILDERS: dict[str, Callable[[dict], dict]] = {
    "human": lambda p: {"body": BodyParams(**p["body"]), "motion": HumanMotion(**p["motion"])},
}


def shape_from_description(description: dict) -> DeformedShape:
    """Rebuild a shape exactly from its ``describe()`` dict (also after a JSON round trip).

    Raises:
        ShapeError: unknown family or malformed parameters.
    """
    try:
        family = description["family"]
        params = dict(description["parameters"])
        gm = GlobalMotion(**params.pop("global_motion"))
        cls = _family(family)
        kwargs = _BUILDERS[family](params) if family in _BUILDERS else params
        if cls is Human:
            return Human(kwargs["body"], kwargs["motion"], duration=description["duration"],
                         global_motion=gm, mesh_voxel=description.get("mesh_voxel"),
                         seed=description.get("seed"))
        return cls(**kwargs, duration=description["duration"], global_motion=gm,
                   mesh_voxel=description.get("mesh_voxel"), seed=description.get("seed"))
    except (KeyError, TypeError) as exc:
        raise ShapeError(f"malformed shape description: {exc!r}") from exc


def turning(shape: DeformedShape, yaw_rate: float, drift=(0.0, 0.0, 0.0)) -> DeformedShape:
    """The same shape and motion, with its global motion replaced: turning about the vertical at
    ``yaw_rate`` rad/s from yaw 0 and drifting at ``drift`` m/s (a person turning in front of a
    fixed camera: the tests' and benchmarks' scene for flips and for views of other sides)."""
    description = shape.describe()
    description["parameters"]["global_motion"] = {"yaw0": 0.0, "yaw_rate": float(yaw_rate),
                                                  "drift": tuple(float(d) for d in drift)}
    return shape_from_description(description)
