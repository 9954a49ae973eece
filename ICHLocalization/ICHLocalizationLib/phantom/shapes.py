"""The points of one sub-slice in the head frame and the soft-edged shapes drawn on them."""
import numpy as np


class Field:
    """Points of one sub-slice in the head frame (x → R, y → A, z → S, mm), with helpers for
    soft-edged shapes; `edge` is the width (mm) over which a shape's occupancy goes from 1 to 0."""

    def __init__(self, x, y, z, edge):
        self.x, self.y, self.z, self.edge = x, y, z, edge

    def soft(self, signed_mm):
        """Occupancy from a signed distance (negative inside), linear over one pixel."""
        return np.clip(0.5 - signed_mm / self.edge, 0.0, 1.0)

    def ellipsoid_sd(self, c, r, rot=None):
        dx, dy, dz = self.x - c[0], self.y - c[1], self.z - c[2]
        if rot is not None:
            dx, dy, dz = (rot[0, 0] * dx + rot[1, 0] * dy + rot[2, 0] * dz,
                          rot[0, 1] * dx + rot[1, 1] * dy + rot[2, 1] * dz,
                          rot[0, 2] * dx + rot[1, 2] * dy + rot[2, 2] * dz)
        rho = np.sqrt((dx / r[0]) ** 2 + (dy / r[1]) ** 2 + (dz / r[2]) ** 2) + 1e-6
        dist = np.sqrt(dx * dx + dy * dy + dz * dz)
        return (rho - 1.0) * dist / rho, rho

    def ellipsoid(self, c, r, rot=None):
        return self.soft(self.ellipsoid_sd(c, r, rot)[0])

    def angle_from(self, direction):
        """Angle (radians) between each point's direction from the origin and `direction`."""
        n = np.sqrt(self.x ** 2 + self.y ** 2 + self.z ** 2) + 1e-6
        cosang = (self.x * direction[0] + self.y * direction[1] + self.z * direction[2]) / n
        return np.arccos(np.clip(cosang, -1, 1))


def random_rotation(rng, max_deg):
    from ..preprocessing import rotation_matrix

    return rotation_matrix(*rng.uniform(-max_deg, max_deg, 3))


def unit_vector(rng):
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)
