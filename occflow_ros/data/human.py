"""Articulated human-like figures: a randomised skinned body and D-FAUST-like motion families.

The body (world frame: x forward, y left, z up, standing on ``z = 0``, rest pose an A-pose with the
arms 40 degrees from the sides) is the smooth union of round cones (limbs, neck, shoulders, feet) and
ellipsoids (pelvis, abdomen, chest, head, hands), one primitive per bone of a 19-bone skeleton
(pelvis, spine, chest, neck, head; clavicle, upper arm, forearm, hand; thigh, shin, foot per side).
Skinning is linear blend skinning with weights ``softmax(-d_p(X) / sigma)`` over the primitives'
implicit values ``d_p``: smooth everywhere, a partition of unity, and following the body parts rather
than the bone axes (a point on the chest's side belongs to the chest, not the nearby upper arm).
Motions are smooth (C-infinity) functions of time; every motion's amplitude, speed and phase are
drawn per sample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from .errors import ShapeError
from .implicit import Ellipsoids, RoundCones, smooth_union
from .ranges import MotionRanges, as_generator, draw_global_motion
from .shape import DeformedShape, GlobalMotion

__all__ = ["BodyParams", "HumanMotion", "Human", "HUMAN_MOTIONS", "BONES"]

BONES: tuple[str, ...] = (
    "pelvis", "spine", "chest", "neck", "head",
    "clavicle_l", "upper_arm_l", "forearm_l", "hand_l",
    "clavicle_r", "upper_arm_r", "forearm_r", "hand_r",
    "thigh_l", "shin_l", "foot_l", "thigh_r", "shin_r", "foot_r",
)
_PARENT = {
    "pelvis": None, "spine": "pelvis", "chest": "spine", "neck": "chest", "head": "neck",
    "clavicle_l": "chest", "upper_arm_l": "clavicle_l", "forearm_l": "upper_arm_l", "hand_l": "forearm_l",
    "clavicle_r": "chest", "upper_arm_r": "clavicle_r", "forearm_r": "upper_arm_r", "hand_r": "forearm_r",
    "thigh_l": "pelvis", "shin_l": "thigh_l", "foot_l": "shin_l",
    "thigh_r": "pelvis", "shin_r": "thigh_r", "foot_r": "shin_r",
}
_BONE_INDEX = {name: i for i, name in enumerate(BONES)}
_MIRROR = np.diag([1.0, -1.0, 1.0])
_A_POSE = np.deg2rad(40.0)           # rest-pose arm abduction from the sides
_FORWARD_UP = np.array([1.0, 0.0, 1.0]) / np.sqrt(2.0)
_DEG = np.pi / 180.0
_TWO_PI = 2.0 * np.pi


# ---- rotations ---------------------------------------------------------------------------------------
def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    k = _skew(axis / np.linalg.norm(axis))
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def _min_rotation(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit ``u`` to unit ``v`` (smooth in ``v`` away from ``-u``)."""
    k = _skew(np.cross(u, v))
    return np.eye(3) + k + (k @ k) / (1.0 + float(u @ v))


def _arm_direction(abduction: float, flexion: float) -> np.ndarray:
    """Left upper-arm direction: ``abduction`` from the side in the frontal plane, then ``flexion`` forward."""
    return np.array([np.sin(flexion), np.cos(flexion) * np.sin(abduction),
                     -np.cos(flexion) * np.cos(abduction)])


# ---- body --------------------------------------------------------------------------------------------
def _check_in(name: str, value: float, lo: float, hi: float) -> float:
    value = float(value)
    if not lo <= value <= hi:
        raise ShapeError(f"BodyParams.{name} must be in [{lo}, {hi}], got {value}")
    return value


@dataclass(frozen=True)
class BodyParams:
    """Proportions of a figure: its standing height (metres) and dimensionless multipliers (1 = average).

    Attributes:
        height: standing height, metres, in [1.3, 2.1].
        legs: leg length relative to the trunk, [0.85, 1.15].
        arms: arm length, [0.85, 1.15].
        shoulders: shoulder width, [0.8, 1.2].
        hips: hip width, [0.8, 1.25].
        girth: overall limb and trunk thickness, [0.75, 1.3].
        upper_girth: extra thickness of the arms, shoulders and chest, [0.85, 1.15].
        lower_girth: extra thickness of the pelvis and legs, [0.85, 1.15].
        head: head size, [0.9, 1.1].
    """

    height: float = 1.75
    legs: float = 1.0
    arms: float = 1.0
    shoulders: float = 1.0
    hips: float = 1.0
    girth: float = 1.0
    upper_girth: float = 1.0
    lower_girth: float = 1.0
    head: float = 1.0

    _LIMITS = {"height": (1.3, 2.1), "legs": (0.85, 1.15), "arms": (0.85, 1.15),
               "shoulders": (0.8, 1.2), "hips": (0.8, 1.25), "girth": (0.75, 1.3),
               "upper_girth": (0.85, 1.15), "lower_girth": (0.85, 1.15), "head": (0.9, 1.1)}

    def __post_init__(self) -> None:
        for key, (lo, hi) in self._LIMITS.items():
            object.__setattr__(self, key, _check_in(key, getattr(self, key), lo, hi))

    @classmethod
    def random(cls, rng: np.random.Generator, height: tuple[float, float] = (1.5, 1.95)) -> "BodyParams":
        """Plausible random proportions: height uniform in ``height`` metres, multipliers around 1."""
        return cls(height=rng.uniform(*height), legs=rng.uniform(0.94, 1.06), arms=rng.uniform(0.94, 1.06),
                   shoulders=rng.uniform(0.9, 1.1), hips=rng.uniform(0.9, 1.12),
                   girth=rng.uniform(0.85, 1.15), upper_girth=rng.uniform(0.93, 1.07),
                   lower_girth=rng.uniform(0.93, 1.07), head=rng.uniform(0.94, 1.06))


@dataclass
class _Body:
    """Built geometry in metres: joints (B, 3), primitives in bone order, bone lengths used by motions."""

    joints: np.ndarray
    cones: RoundCones
    cone_bones: np.ndarray
    ellipsoids: Ellipsoids
    ellipsoid_bones: np.ndarray
    thigh: float
    shin: float
    arm_rest: np.ndarray               # left upper-arm rest direction (3,)
    elbow_axis: np.ndarray             # left elbow hinge axis (3,)
    knee_axis: np.ndarray              # left knee hinge axis (3,)
    top: float = 0.0


def _build_body(p: BodyParams) -> _Body:
    """Joint positions and primitives of a figure, first for unit nominal height, then scaled to metres."""
    gu = p.girth * p.upper_girth
    gl = p.girth * p.lower_girth
    foot_h = 0.040
    shin = 0.246 * p.legs
    thigh = 0.245 * p.legs
    ankle_z = foot_h
    knee_z = ankle_z + shin
    hip_z = knee_z + thigh
    pelvis_z = hip_z + 0.03
    lumbar_z = hip_z + 0.08
    thoracic_z = hip_z + 0.17
    neck_z = hip_z + 0.29
    head_joint_z = neck_z + 0.05
    head_semi = np.array([0.056, 0.047, 0.066]) * p.head
    head_centre = np.array([0.008, 0.0, head_joint_z + 0.052 * p.head])
    top = head_centre[2] + head_semi[2]
    hip_y = 0.052 * p.hips
    ankle_y = 0.072 * p.hips
    shoulder = np.array([0.0, 0.105 * p.shoulders * gu ** 0.3, neck_z - 0.005])
    clav_root = np.array([-0.012, 0.025, neck_z - 0.025])
    arm_rest = _arm_direction(_A_POSE, 0.0)
    elbow = shoulder + 0.186 * p.arms * arm_rest
    wrist = elbow + 0.146 * p.arms * arm_rest
    hand_len = 0.108 * p.arms
    hip = np.array([0.0, hip_y, hip_z])
    ankle = np.array([0.0, ankle_y, ankle_z])
    knee = hip + (ankle - hip) * thigh / (thigh + shin)
    gh = p.girth ** 0.3
    gf = p.girth ** 0.2

    def side(v: np.ndarray, s: float) -> np.ndarray:
        return v * np.array([1.0, s, 1.0])

    joints = {
        "pelvis": np.array([0.0, 0.0, pelvis_z]), "spine": np.array([-0.02, 0.0, lumbar_z]),
        "chest": np.array([-0.02, 0.0, thoracic_z]), "neck": np.array([-0.01, 0.0, neck_z]),
        "head": np.array([0.0, 0.0, head_joint_z]),
    }
    cones_a, cones_b, cones_r1, cones_r2, cone_bones = [], [], [], [], []

    def cone(bone: str, a, b, r1, r2) -> None:
        cones_a.append(a), cones_b.append(b), cones_r1.append(r1), cones_r2.append(r2)
        cone_bones.append(_BONE_INDEX[bone])

    cone("neck", np.array([-0.012, 0.0, neck_z - 0.03]), np.array([0.0, 0.0, head_joint_z + 0.01]),
         0.034 * gu, 0.029 * gu)
    for s, tag in ((1.0, "l"), (-1.0, "r")):
        joints[f"clavicle_{tag}"] = side(clav_root, s)
        joints[f"upper_arm_{tag}"] = side(shoulder, s)
        joints[f"forearm_{tag}"] = side(elbow, s)
        joints[f"hand_{tag}"] = side(wrist, s)
        joints[f"thigh_{tag}"] = side(hip, s)
        joints[f"shin_{tag}"] = side(knee, s)
        joints[f"foot_{tag}"] = side(ankle, s)
        cone(f"clavicle_{tag}", side(clav_root, s), side(shoulder, s), 0.036 * gu, 0.031 * gu)
        cone(f"upper_arm_{tag}", side(shoulder, s), side(elbow, s), 0.028 * gu, 0.0195 * gu)
        cone(f"forearm_{tag}", side(elbow, s), side(wrist, s), 0.0195 * gu, 0.0135 * gu)
        cone(f"thigh_{tag}", side(hip, s), side(knee, s), 0.050 * gl, 0.030 * gl)
        cone(f"shin_{tag}", side(knee, s), side(ankle, s), 0.030 * gl, 0.0185 * gl)
        heel_r, toe_r = 0.021 * gf, 0.015 * gf
        cone(f"foot_{tag}", side(np.array([-0.03, ankle_y, heel_r]), s),
             side(np.array([0.085, ankle_y + 0.01, toe_r]), s), heel_r, toe_r)

    ell_c, ell_axes, ell_semi, ell_bones = [], [], [], []

    def ellipsoid(bone: str, centre, semi, axes=None) -> None:
        ell_c.append(centre), ell_semi.append(semi), ell_bones.append(_BONE_INDEX[bone])
        ell_axes.append(np.eye(3) if axes is None else axes)

    ellipsoid("pelvis", np.array([-0.01, 0.0, hip_z + 0.025]), np.array([0.063, 0.092 * p.hips, 0.068]) * gl)
    ellipsoid("spine", np.array([0.0, 0.0, hip_z + 0.11]),
              np.array([0.056 * p.girth ** 1.4, 0.082 * p.girth, 0.08]))
    ellipsoid("chest", np.array([-0.008, 0.0, hip_z + 0.21]),
              np.array([0.062 * gu, 0.088 * (p.shoulders * gu) ** 0.5, 0.095]))
    ellipsoid("head", head_centre, head_semi)
    hand_width = np.array([1.0, 0.0, 0.0])
    hand_normal = np.cross(arm_rest, hand_width)
    for s, tag in ((1.0, "l"), (-1.0, "r")):
        axes = np.stack([hand_width, side(hand_normal, s), side(arm_rest, s)], axis=1)
        if np.linalg.det(axes) < 0:
            axes[:, 1] *= -1.0
        ellipsoid(f"hand_{tag}", side(wrist + 0.5 * hand_len * arm_rest, s),
                  np.array([0.024 * gh, 0.0115 * gh, 0.5 * hand_len]), axes)

    scale = p.height / top
    joint_arr = np.stack([joints[b] for b in BONES]) * scale
    cones = RoundCones(a=np.stack(cones_a) * scale, b=np.stack(cones_b) * scale,
                       r1=np.array(cones_r1) * scale, r2=np.array(cones_r2) * scale, eps=0.004)
    ells = Ellipsoids(centre=np.stack(ell_c) * scale, axes=np.stack(ell_axes),
                      semi=np.stack(ell_semi) * scale, eps=0.05)
    elbow_axis = np.cross(arm_rest, np.array([1.0, 0.0, 0.0]))
    shin_dir = (ankle - knee) / np.linalg.norm(ankle - knee)
    knee_axis = np.cross(np.array([1.0, 0.0, 0.0]), shin_dir)
    return _Body(joints=joint_arr, cones=cones, cone_bones=np.array(cone_bones),
                 ellipsoids=ells, ellipsoid_bones=np.array(ell_bones),
                 thigh=thigh * scale, shin=shin * scale, arm_rest=arm_rest,
                 elbow_axis=elbow_axis / np.linalg.norm(elbow_axis),
                 knee_axis=knee_axis / np.linalg.norm(knee_axis), top=p.height)


# ---- poses -------------------------------------------------------------------------------------------
@dataclass
class _Pose:
    """Local bone rotations (about each bone's rest joint, relative to the parent) and the root's motion."""

    body: _Body
    root_translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    root_rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    local: dict = field(default_factory=dict)

    def set(self, bone: str, rot: np.ndarray) -> None:
        self.local[bone] = rot

    def limb(self, bone_left: str, side: str, rot_left: np.ndarray) -> None:
        """Set a left-convention rotation on the ``side`` ('l' or 'r') copy of a limb bone (mirrored)."""
        bone = bone_left[:-1] + side
        self.local[bone] = rot_left if side == "l" else _MIRROR @ rot_left @ _MIRROR

    def arm(self, side: str, abduction: float, flexion: float, elbow: float, clavicle: float = 0.0,
            protraction: float = 0.0) -> None:
        """Arm pose: upper-arm ``abduction`` from the side and forward ``flexion`` (the arm's direction
        in the chest frame, whatever the clavicle does), ``elbow`` flexion, ``clavicle`` elevation
        and ``protraction`` (shoulder forward), which take part of the shoulder's rotation; radians,
        left convention (mirrored for the right)."""
        target = _arm_direction(abduction, flexion)
        swing = _min_rotation(self.body.arm_rest, target)
        # the elbow bends the forearm towards "forward and up" (projected perpendicular to the upper
        # arm): forward for a hanging arm, up for an arm pointing forward. The bend axis is chosen in
        # the upper arm's frame instead of twisting the upper arm (a twist folds LBS skin).
        prefer = _FORWARD_UP - (_FORWARD_UP @ target) * target
        hinge = np.cross(target, prefer / np.linalg.norm(prefer))
        clav = _rz(-protraction) @ _rx(clavicle)
        self.limb("clavicle_l", side, clav)
        self.limb("upper_arm_l", side, clav.T @ swing)
        self.limb("forearm_l", side, _axis_angle(swing.T @ hinge, elbow))

    def leg(self, side: str, flexion: float, knee: float, abduction: float = 0.0,
            ankle_pitch: float = 0.0, ankle_roll: float = 0.0) -> None:
        """Leg pose: hip ``flexion`` (thigh forward) and ``abduction``, ``knee`` flexion, ankle plantar
        flexion ``ankle_pitch`` (toes down) and ``ankle_roll``; radians, left convention."""
        self.limb("thigh_l", side, _rx(abduction) @ _ry(-flexion))
        self.limb("shin_l", side, _axis_angle(self.body.knee_axis, knee))
        self.limb("foot_l", side, _rx(ankle_roll) @ _ry(ankle_pitch))

    def leg_drop(self, flexion: float, knee: float) -> float:
        """How far the hip sinks (metres) when the hip flexes by ``flexion`` and the knee by ``knee``."""
        b = self.body
        return b.thigh + b.shin - b.thigh * np.cos(flexion) - b.shin * np.cos(knee - flexion)

    def transforms(self) -> tuple[np.ndarray, np.ndarray]:
        """Bone transforms canonical -> posed: rotations (B, 3, 3), translations (B, 3)."""
        joints = self.body.joints
        rots = np.empty((len(BONES), 3, 3))
        trans = np.empty((len(BONES), 3))
        for i, bone in enumerate(BONES):
            j = joints[i]
            if _PARENT[bone] is None:
                r = self.root_rotation
                rots[i] = r
                trans[i] = j + self.root_translation - r @ j
                continue
            r = self.local.get(bone)
            k = _BONE_INDEX[_PARENT[bone]]
            if r is None:
                rots[i], trans[i] = rots[k], trans[k]
            else:
                rots[i] = rots[k] @ r
                trans[i] = rots[k] @ (j - r @ j) + trans[k]
        return rots, trans


# ---- motions -----------------------------------------------------------------------------------------
def _smooth_pulse(x: np.ndarray | float, power: float) -> float:
    """``((1 - cos x) / 2) ** power``: a smooth pulse in [0, 1], 1 at x = pi."""
    return float(((1.0 - np.cos(x)) / 2.0) ** power)


def _hopping(pose: _Pose, c: float, u: float, extra: dict) -> None:
    h = pose.body.top
    air = (1.0 + np.sin(c)) / 2.0
    crouch = 1.0 - air
    knee = u * 40 * _DEG * crouch
    for s in ("l", "r"):
        pose.leg(s, knee / 2, knee, ankle_pitch=u * 18 * _DEG * air - knee / 2)
        pose.arm(s, (17 + 5 * min(u, 1.2) * np.sin(c - 0.8)) * _DEG, 8 * u * np.sin(c - 0.8) * _DEG,
                 (20 + 14 * u * crouch) * _DEG)
    pose.set("spine", _ry(6 * u * crouch * _DEG))
    pose.set("head", _ry(-4 * u * crouch * _DEG))
    pose.root_translation = np.array([0.0, 0.0, 0.045 * h * u * air - pose.leg_drop(knee / 2, knee)])


def _jumping_jacks(pose: _Pose, c: float, u: float, extra: dict) -> None:
    h = pose.body.top
    open_ = (1.0 - np.cos(c)) / 2.0
    arm_abd = min(12.0 + 118.0 * u, 150.0) * open_ + 12.0 * (1 - open_)
    leg_abd = u * 13 * _DEG * open_
    for s in ("l", "r"):
        pose.arm(s, arm_abd * _DEG, 5 * _DEG, 15 * _DEG, clavicle=min(25 * u, 30) * open_ * _DEG)
        pose.leg(s, 4 * u * _DEG, 8 * u * _DEG, abduction=leg_abd, ankle_pitch=-4 * u * _DEG,
                 ankle_roll=-leg_abd)
    legs = pose.body.thigh + pose.body.shin
    hop = 0.035 * h * u * np.sin(c) ** 2
    pose.root_translation = np.array([0.0, 0.0, hop - legs * (1 - np.cos(leg_abd))
                                      - pose.leg_drop(4 * u * _DEG, 8 * u * _DEG)])


def _punching(pose: _Pose, c: float, u: float, extra: dict) -> None:
    punch = {"l": _smooth_pulse(c, 3.0), "r": _smooth_pulse(c + np.pi, 3.0)}
    for s in ("l", "r"):
        p = punch[s]
        pose.arm(s, (20 - 8 * p) * _DEG, (35 + 45 * min(u, 1.0) * p) * _DEG,
                 (100 - 92 * min(u, 1.0) * p) * _DEG, clavicle=8 * min(u, 1.2) * p * _DEG,
                 protraction=18 * min(u, 1.2) * p * _DEG)
        pose.leg(s, 6 * _DEG, 12 * _DEG, ankle_pitch=-6 * _DEG)
    twist = -u * 15 * _DEG * (punch["l"] - punch["r"])
    pose.set("chest", _rz(twist))
    pose.set("spine", _rz(0.5 * twist))
    pose.set("head", _rz(-0.8 * twist))
    pose.root_translation = np.array([0.0, 0.0, -pose.leg_drop(6 * _DEG, 12 * _DEG)])


def _running_on_spot(pose: _Pose, c: float, u: float, extra: dict) -> None:
    h = pose.body.top
    lift = {"l": ((1 + np.sin(c)) / 2) ** 2, "r": ((1 - np.sin(c)) / 2) ** 2}
    for s, o in (("l", "r"), ("r", "l")):
        p = lift[s]
        flex, knee = min(45 * u, 60) * p * _DEG, min(95 * u, 108) * p * _DEG
        # the foot stays level near the floor and points down as the heel kicks up
        pose.leg(s, flex, knee, ankle_pitch=-(knee - flex) * (1 - p) + 15 * u * p * _DEG)
        pose.arm(s, 20 * _DEG, min(35 * u, 45) * (lift[o] - lift[s]) * _DEG, 80 * _DEG)
    pose.set("chest", _rz(6 * u * (lift["l"] - lift["r"]) * _DEG))
    pose.root_translation = np.array([0.0, 0.0, 0.02 * h * u * np.sin(c) ** 2])


def _arm_waves(pose: _Pose, c: float, u: float, extra: dict) -> None:
    offset = float(extra.get("side_offset", 0.0))
    for s, phase in (("l", 0.0), ("r", offset)):
        w = np.sin(c + phase)
        pose.arm(s, (75 + 25 * min(u, 1.3) * w) * _DEG, 10 * _DEG,
                 (25 + 35 * u * (1 + np.sin(c + phase + 1.2)) / 2) * _DEG,
                 clavicle=10 * u * (1 + w) / 2 * _DEG)
        pose.leg(s, 0.0, 0.0)
    pose.set("spine", _rx(4 * u * np.sin(c) * _DEG))


def _knee_raises(pose: _Pose, c: float, u: float, extra: dict) -> None:
    lift = {"l": ((1 + np.sin(c)) / 2) ** 2, "r": ((1 - np.sin(c)) / 2) ** 2}
    hip = min(85 * u, 95) * _DEG
    tilt = hip / 6 * (lift["l"] + lift["r"])        # posterior pelvic tilt takes part of the hip flexion
    pose.root_rotation = _ry(-tilt)
    for s, o in (("l", "r"), ("r", "l")):
        p = lift[s]
        flex, knee = hip * p - tilt, min(95 * u, 110) * p * _DEG
        pose.leg(s, flex, knee, ankle_pitch=-(knee - flex - tilt) * (1 - p) + 20 * u * p * _DEG)
        pose.arm(s, 15 * _DEG, 20 * u * (lift[o] - lift[s]) * _DEG, 30 * _DEG)
    pose.set("spine", _ry(tilt - 5 * u * (lift["l"] + lift["r"]) * _DEG))


def _hip_shakes(pose: _Pose, c: float, u: float, extra: dict) -> None:
    b = pose.body
    shift = 0.03 * b.top * u * np.sin(c)
    roll = 8 * u * np.sin(c) * _DEG
    yaw = 8 * u * np.cos(c) * _DEG
    pose.root_rotation = _rz(yaw) @ _rx(roll)
    pose.set("spine", _rx(-roll / 2) @ _rz(-yaw / 2))
    pose.set("chest", _rx(-roll / 2) @ _rz(-yaw / 2))
    lean = np.arctan2(shift, b.thigh + b.shin)
    # the tilted pelvis lifts one hip joint and lowers the other; each knee bends just enough to keep
    # its foot on the floor (two-bone leg, hip flexion fixed), and the ankle keeps the foot level
    joints = b.joints
    hip_y = joints[_BONE_INDEX["thigh_l"], 1]
    depth = joints[_BONE_INDEX["pelvis"], 2] - joints[_BONE_INDEX["thigh_l"], 2]
    flex = 8 * _DEG
    drop = pose.leg_drop(flex, 16 * _DEG) + hip_y * np.sin(8 * u * _DEG)
    rest = b.thigh + b.shin
    for s, sign in (("l", 1.0), ("r", -1.0)):
        rise = sign * hip_y * np.sin(roll) - depth * (np.cos(roll) - 1.0)
        reach = (rest - drop + rise) / np.cos(lean)
        knee = flex + np.arccos(np.clip((reach - b.thigh * np.cos(flex)) / b.shin, -1.0, 1.0))
        abduction = -sign * (lean + roll)
        pose.leg(s, flex, knee, abduction=abduction, ankle_pitch=-(knee - flex), ankle_roll=sign * lean)
        pose.arm(s, 15 * _DEG, 5 * _DEG, 40 * _DEG)
    pose.root_translation = np.array([0.0, shift, -drop])


@dataclass(frozen=True)
class _MotionFamily:
    function: Callable[[_Pose, float, float, dict], None]
    frequency: float                   # nominal, Hz
    description: str
    draw_extra: Callable[[np.random.Generator], dict] = lambda rng: {}


HUMAN_MOTIONS: dict[str, _MotionFamily] = {
    "hopping": _MotionFamily(_hopping, 1.8, "light hopping on both feet, knees absorbing the landing"),
    "jumping_jacks": _MotionFamily(_jumping_jacks, 1.1, "arms raised sideways overhead, legs apart, hop"),
    "punching": _MotionFamily(_punching, 0.9, "alternating straight punches from a guard, torso twist"),
    "running_on_spot": _MotionFamily(_running_on_spot, 1.4, "running in place, heels up, arms swinging"),
    "arm_waves": _MotionFamily(_arm_waves, 1.0, "arms held out sideways and waved up and down",
                               lambda rng: {"side_offset": float(rng.choice([0.0, np.pi]))}),
    "knee_raises": _MotionFamily(_knee_raises, 0.7, "alternating high knee raises"),
    "hip_shakes": _MotionFamily(_hip_shakes, 1.2, "pelvis swaying and tilting side to side"),
}


@dataclass(frozen=True)
class HumanMotion:
    """One motion: a family from ``HUMAN_MOTIONS`` with its amplitude, frequency and phase.

    Attributes:
        name: a key of ``HUMAN_MOTIONS``.
        amplitude: fraction of the family's reference amplitude, [0, 1.5].
        frequency: cycles per second, (0, 6].
        phase: radians.
        extra: family-specific settings (e.g. arm_waves' ``side_offset``).
    """

    name: str
    amplitude: float = 1.0
    frequency: float = 1.0
    phase: float = 0.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in HUMAN_MOTIONS:
            raise ShapeError(f"unknown human motion {self.name!r}; known: {sorted(HUMAN_MOTIONS)}")
        if not 0.0 <= self.amplitude <= 1.5:
            raise ShapeError(f"HumanMotion.amplitude must be in [0, 1.5], got {self.amplitude}")
        if not 0.0 < self.frequency <= 6.0:
            raise ShapeError(f"HumanMotion.frequency must be in (0, 6] Hz, got {self.frequency}")

    @classmethod
    def random(cls, rng: np.random.Generator, name: str | None = None,
               ranges: MotionRanges | None = None) -> "HumanMotion":
        """A random motion of family ``name`` (random family when None) within ``ranges``."""
        ranges = ranges or MotionRanges()
        if name is None:
            name = str(rng.choice(sorted(HUMAN_MOTIONS)))
        if name not in HUMAN_MOTIONS:
            raise ShapeError(f"unknown human motion {name!r}; known: {sorted(HUMAN_MOTIONS)}")
        fam = HUMAN_MOTIONS[name]
        return cls(name=name, amplitude=ranges.draw_amplitude(rng),
                   frequency=fam.frequency * ranges.draw_speed(rng),
                   phase=float(rng.uniform(0.0, _TWO_PI)), extra=fam.draw_extra(rng))


# ---- the shape ---------------------------------------------------------------------------------------
class Human(DeformedShape):
    """A skinned human-like figure performing a ``HumanMotion`` (see the module docstring).

    Args:
        body: proportions.
        motion: the motion.
        duration: natural time range, seconds.
        global_motion: rigid yaw/drift on top, or None.
        mesh_voxel: canonical mesh resolution, metres (default height / 128, about 1.4 cm: ~27k
            triangles whose chords stay within ~2 mm of the exact surface).
        blend: smooth-union blend length as a fraction of the height.
        skin_sigma: skinning-weight temperature as a fraction of the height.
        seed: provenance only.
    """

    family = "human"
    candidates = 3                     # rigid-inverse starting guesses tried per point
    prune_margin = 0.085               # fraction of height: farther from every bone's part -> outside

    def __init__(self, body: BodyParams, motion: HumanMotion, *, duration: float = 2.0,
                 global_motion: GlobalMotion | None = None, mesh_voxel: float | None = None,
                 blend: float = 0.008, skin_sigma: float = 0.015, seed: int | None = None) -> None:
        if not isinstance(body, BodyParams) or not isinstance(motion, HumanMotion):
            raise ShapeError("Human needs a BodyParams and a HumanMotion")
        if not 0.0 < blend <= 0.03:
            raise ShapeError(f"Human.blend must be in (0, 0.03] (fraction of height), got {blend}")
        if not 0.002 <= skin_sigma <= 0.05:
            raise ShapeError(f"Human.skin_sigma must be in [0.002, 0.05] (fraction of height), got {skin_sigma}")
        self.body = body
        self.motion = motion
        self._geo = _build_body(body)
        self._k = blend * body.height
        self._sigma = skin_sigma * body.height
        self._prim_bones = np.concatenate([self._geo.cone_bones, self._geo.ellipsoid_bones])
        self._n_cones = len(self._geo.cones)
        self._cache: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        super().__init__(duration=duration, global_motion=global_motion,
                         mesh_voxel=mesh_voxel or body.height / 128.0, seed=seed)

    @classmethod
    def random(cls, seed: int | np.random.Generator, *, motion: str | None = None,
               ranges: MotionRanges | None = None, global_motion: bool = True,
               duration: float = 2.0, height: tuple[float, float] = (1.5, 1.95)) -> "Human":
        """A random figure (proportions, motion family unless ``motion`` is given, amplitude, speed,
        phase and, when ``global_motion``, a slow yaw and drift), reproducible from ``seed``."""
        rng, seed_value = as_generator(seed)
        ranges = ranges or MotionRanges()
        body = BodyParams.random(rng, height)
        mot = HumanMotion.random(rng, motion, ranges)
        gm = draw_global_motion(rng, ranges) if global_motion else None
        return cls(body, mot, duration=duration, global_motion=gm, seed=seed_value)

    @property
    def height(self) -> float:
        return self.body.height

    def motion_name(self) -> str:
        return self.motion.name

    def parameters(self) -> dict:
        return {"body": asdict(self.body), "motion": asdict(self.motion)}

    def rest_joints(self) -> dict[str, np.ndarray]:
        """Canonical (rest-pose) positions (3,) of the skeleton's joints (bone heads), metres."""
        return {b: self._geo.joints[i].copy() for i, b in enumerate(BONES)}

    def joints(self, t: float) -> dict[str, np.ndarray]:
        """World positions (3,) of the skeleton's joints at ``t`` (bone heads), metres."""
        rots, trans, _, _ = self._state(float(t))
        pos = np.einsum("bij,bj->bi", rots, self._geo.joints) + trans
        pos = self._apply_global(pos, float(t))
        return {b: pos[i] for i, b in enumerate(BONES)}

    # ---- canonical body --------------------------------------------------------------------------
    def _primitives(self, x: np.ndarray, grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Every primitive at every point: x (N, 3) -> (d (N, P), grad (N, P, 3) or None)."""
        dc, gc = self._geo.cones.evaluate(x[:, None, :], grad)
        de, ge = self._geo.ellipsoids.evaluate(x[:, None, :], grad)
        d = np.concatenate([dc, de], axis=1)
        return d, (np.concatenate([gc, ge], axis=1) if grad else None)

    def _primitives_own(self, x: np.ndarray) -> np.ndarray:
        """Primitive p at point x[:, p]: x (N, P, 3) -> d (N, P)."""
        nc = self._n_cones
        return np.concatenate([self._geo.cones.evaluate(x[:, :nc], False)[0],
                               self._geo.ellipsoids.evaluate(x[:, nc:], False)[0]], axis=1)

    def canonical_field(self, material: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out_s = np.empty(len(material))
        out_g = np.empty((len(material), 3))
        for sl in _chunks(len(material)):
            d, g = self._primitives(material[sl])
            out_s[sl], out_g[sl] = smooth_union(d, g, self._k)
        return out_s, out_g

    def canonical_value(self, material: np.ndarray) -> np.ndarray:
        out = np.empty(len(material))
        for sl in _chunks(len(material)):
            out[sl] = smooth_union(self._primitives(material[sl], False)[0], None, self._k)[0]
        return out

    def canonical_box(self) -> tuple[np.ndarray, np.ndarray]:
        cones, ells = self._geo.cones, self._geo.ellipsoids
        lo = np.minimum(np.min(np.minimum(cones.a - cones.r1[:, None], cones.b - cones.r2[:, None]), 0),
                        np.min(ells.centre - ells.semi.max(1)[:, None], 0))
        hi = np.maximum(np.max(np.maximum(cones.a + cones.r1[:, None], cones.b + cones.r2[:, None]), 0),
                        np.max(ells.centre + ells.semi.max(1)[:, None], 0))
        m = 0.03 + 3 * self.mesh_voxel
        return lo - m, hi + m

    def skinning_weights(self, material: np.ndarray) -> np.ndarray:
        """Per-bone skinning weights (N, B) of material points, rows summing to 1."""
        w = np.zeros((len(material), len(BONES)))
        for sl in _chunks(len(material)):
            d, _ = self._primitives(material[sl], False)
            pw = _softmax(-d / self._sigma)
            for p, b in enumerate(self._prim_bones):
                w[sl, b] += pw[:, p]
        return w

    # ---- deformation -----------------------------------------------------------------------------
    def _state(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Bone rotations (B,3,3), translations (B,3) and per-primitive M (P,3,3), m (P,3) at ``t``."""
        hit = self._cache.get(t)
        if hit is not None:
            return hit
        pose = _Pose(self._geo)
        fam = HUMAN_MOTIONS[self.motion.name]
        fam.function(pose, _TWO_PI * self.motion.frequency * t + self.motion.phase,
                     self.motion.amplitude, self.motion.extra)
        rots, trans = pose.transforms()
        out = (rots, trans, rots[self._prim_bones], trans[self._prim_bones])
        if len(self._cache) >= 16:
            self._cache.pop(next(iter(self._cache)))
        self._cache[t] = out
        return out

    def deform(self, material: np.ndarray, t: float, jacobian: bool = False
               ) -> tuple[np.ndarray, np.ndarray | None]:
        _, _, mats, offs = self._state(float(t))
        y = np.empty_like(material)
        jac = np.empty((len(material), 3, 3)) if jacobian else None
        for sl in _chunks(len(material)):
            xs = material[sl]
            d, g = self._primitives(xs)
            w = _softmax(-d / self._sigma)                              # (n, P)
            yp = np.einsum("pij,nj->npi", mats, xs) + offs              # (n, P, 3)
            ys = np.einsum("np,npi->ni", w, yp)
            y[sl] = ys
            if jacobian:
                a = np.einsum("np,pij->nij", w, mats)
                gbar = np.einsum("np,npk->nk", w, g)
                bterm = np.einsum("np,npi,npk->nik", w, yp, g)
                jac[sl] = a - (bterm - ys[:, :, None] * gbar[:, None, :]) / self._sigma
        return y, jac

    def material_state(self, material: np.ndarray) -> np.ndarray:
        """``[w_p X_0 | w_p X_1 | w_p X_2 | w_p]`` (N, 4P): with the skinning weights folded in, the
        skinned positions at any t are one matrix product with the per-primitive transforms."""
        n, p = len(material), len(self._prim_bones)
        design = np.empty((n, 4 * p))
        for sl in _chunks(n):
            w = _softmax(-self._primitives(material[sl], False)[0] / self._sigma)
            for k in range(3):
                design[sl, k * p:(k + 1) * p] = w * material[sl, k:k + 1]
            design[sl, 3 * p:] = w
        return design

    def deform_state(self, state: np.ndarray, t: float) -> np.ndarray:
        _, _, mats, offs = self._state(float(t))
        # coefficients (4P, 3): row k*P + p holds column k of M_p, row 3P + p holds m_p
        coef = np.concatenate([mats[:, :, 0], mats[:, :, 1], mats[:, :, 2], offs], axis=0)
        return state @ coef

    def inverse_candidates(self, y: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        _, _, mats, offs = self._state(float(t))
        k = min(self.candidates, len(mats))
        starts = np.empty((k, len(y), 3))
        own_sorted = np.empty((k, len(y)))
        for sl in _chunks(len(y), 8192):
            cand = np.einsum("pji,npj->npi", mats, y[sl, None, :] - offs)      # rigid inverses (n, P, 3)
            own = self._primitives_own(cand)
            order = np.argsort(own, axis=1)[:, :k]
            rows = np.arange(cand.shape[0])[:, None]
            starts[:, sl] = np.transpose(cand[rows, order], (1, 0, 2))
            own_sorted[:, sl] = own[rows, order].T
        eligible = np.empty((k, len(y)), dtype=bool)
        eligible[0] = own_sorted[0] < self.prune_margin * self.height
        eligible[1:] = own_sorted[1:] < 0.0
        return starts, eligible


def _softmax(logits: np.ndarray) -> np.ndarray:
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    return w / w.sum(axis=1, keepdims=True)


def _chunks(n: int, size: int = 16384):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
