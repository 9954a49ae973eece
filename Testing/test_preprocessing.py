"""Windows, resampling, masks, head crop and rotational alignment."""
import numpy as np
import pytest

from conftest import oblique_volume
from ICHLocalizationLib.phantom import generate
from ICHLocalizationLib.volume import CTVolume
from ICHLocalizationLib import preprocessing
from ICHLocalizationLib.preprocessing import (CHANNEL_CONFIGS, PreparedScan, cascade_grid, channels_torch,
                                              estimate_alignment, half_crop, head_crop, head_mask, neighbour_offset,
                                              resample_spacing, rotation_matrix, slab_average, to_channels, window,
                                              with_neighbours)


def test_windows_map_hu_to_unit_range():
    hu = np.array([-1000.0, 0.0, 40.0, 80.0, 2000.0])
    assert np.allclose(window(hu, "brain"), [0, 0, 0.5, 1, 1])
    sub = window(hu, "subdural")  # L50/W130
    assert np.isclose(sub[2], (40 + 15) / 130.0)
    ch = to_channels(hu.reshape(1, 1, 5), "paper000")
    assert ch.shape == (1, 3, 1, 5) and set(CHANNEL_CONFIGS) >= {"mil-code", "paper000", "unet"}


def test_neighbour_slices_lie_a_distance_in_mm_away():
    """2.5D input: the slices context_mm above and below, the slice itself past the ends and for a
    lone 2D image; the channels are the three windows of each slice in turn."""
    import torch

    assert (neighbour_offset(5.0, 5.0), neighbour_offset(1.0, 5.0), neighbour_offset(10.0, 5.0)) == (1, 5, 1)
    hu = np.arange(5.0)[:, None, None] * np.ones((5, 2, 2))
    assert with_neighbours(hu, [0, 2, 4], 1)[:, :, 0, 0].tolist() == [[0, 0, 1], [1, 2, 3], [3, 4, 4]]
    assert with_neighbours(hu, [2], 2)[0, :, 0, 0].tolist() == [0, 2, 4]
    assert with_neighbours(hu[:1], [0], 1)[0, :, 0, 0].tolist() == [0, 0, 0]
    stack = torch.from_numpy(with_neighbours(hu * 30.0, [2], 1)).float()
    ch = channels_torch(stack, "unet")
    assert ch.shape == (1, 9, 2, 2)
    for s in range(3):
        assert torch.equal(ch[:, 3 * s:3 * s + 3], channels_torch(stack[:, s], "unet"))
    # the MIL's 128 read of a 2.5D stack: each slice pooled 2×2 on its own
    big = np.arange(4 * 4.0).reshape(4, 4) * np.array([1.0, 10.0, 100.0])[:, None, None]
    assert half_crop(big[None])[0, :, 0, 0].tolist() == [2.5, 25.0, 250.0]
    assert half_crop(big).shape == (3, 2, 2)


def test_resampling_keeps_physical_extent():
    vol = oblique_volume(shape=(10, 30, 40), spacing=(0.8, 0.6, 3.0))
    out = resample_spacing(vol, (1.6, 1.2, 6.0))
    assert out.shape == (5, 15, 20)
    lo_old, hi_old = vol.voxel_box_ras((0, 0, 0), np.array(vol.shape) - 1)
    lo_new, hi_new = out.voxel_box_ras((0, 0, 0), np.array(out.shape) - 1)
    assert np.abs(lo_old - lo_new).max() < 1e-6 and np.abs(hi_old - hi_new).max() < 1e-6


def test_thin_slices_reach_the_cascade_as_5mm_slabs(monkeypatch):
    """A 1 mm scan's cascade grid matches the 5 mm scan of the same head when its slices are averaged
    over 5 mm slabs; sampling one thin slice every 5 mm keeps its noise and misses what lies between."""
    hu = np.arange(10.0)[:, None, None] * np.ones((10, 2, 2))
    assert slab_average(hu, 5.0, 5.0) is hu
    assert np.allclose(slab_average(hu, 1.0, 5.0)[5, 0, 0], np.mean([3, 4, 5, 6, 7]))
    thick = generate(7, size=160, slice_thickness=5.0).volume
    thin = generate(7, size=160, slice_thickness=1.0).volume
    align = estimate_alignment(thick)
    reference = cascade_grid(thick, align)[0]
    brain = (reference > 0) & (reference < 100)
    slabs = np.abs(cascade_grid(thin, align)[0] - reference)[brain].mean()
    monkeypatch.setattr(preprocessing, "slab_average", lambda hu, *_: hu)
    samples = np.abs(cascade_grid(thin, align)[0] - reference)[brain].mean()
    assert slabs < 0.8 * samples, (slabs, samples)
    # slices stacked along another axis than S-I are not averaged along it

    def must_not_run(*_):
        raise AssertionError("slab average of a non-axial series")

    monkeypatch.setattr(preprocessing, "slab_average", must_not_run)
    sagittal = CTVolume(thin.hu, thin.ijk_to_ras[:, [2, 1, 0, 3]])
    assert cascade_grid(sagittal, align)[0].shape == reference.shape


@pytest.mark.parametrize("yaw,roll", [(10.0, 0.0), (-8.0, 6.0), (14.0, -5.0)])
def test_alignment_recovers_known_rotation(yaw, roll):
    ph = generate(31, subtypes=[], size=256, pose={"yaw": yaw, "roll": roll, "pitch": 0.0})
    a = estimate_alignment(ph.volume)
    assert abs(a.yaw_deg - yaw) < 2.0, (a.yaw_deg, yaw)
    assert abs(a.roll_deg - roll) < 2.0, (a.roll_deg, roll)
    # the alignment undoes the pose: R_align · R_pose ≈ identity up to pitch
    residual = a.rotation @ rotation_matrix(yaw, roll, 0.0)
    angle = np.degrees(np.arccos(np.clip((np.trace(residual) - 1) / 2, -1, 1)))
    assert angle < 2.5


def test_head_mask_and_crop(small_phantom):
    head = head_mask(small_phantom.volume.hu)
    assert head.sum() > 0.2 * head.size / 3
    crop = head_crop(head)
    jj, ii = np.nonzero(head.any(axis=0))
    assert crop.j0 <= jj.min() and crop.j0 + crop.side > jj.max()
    assert crop.i0 <= ii.min() and crop.i0 + crop.side > ii.max()
    scan = PreparedScan(small_phantom.volume)
    assert scan.crop_hu(256).shape == (32, 256, 256) and scan.crop_hu(128).shape == (32, 128, 128)
    pasted = scan.crop.paste(np.ones((32, 256, 256), np.float32), small_phantom.volume.shape)
    assert pasted[head].min() > 0.99, "the crop covers the whole head"
