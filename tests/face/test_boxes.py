"""box_iou: the one overlap measure detection refinement, tracking and scoring share."""

import numpy as np
import pytest

from services.engine.face.boxes import box_iou


def test_identical_boxes_overlap_fully_and_disjoint_ones_not_at_all():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


def test_partial_overlap_is_intersection_over_union_for_lists_and_arrays():
    a, b = [0, 0, 10, 10], [5, 0, 15, 10]  # intersection 50, union 150
    assert box_iou(a, b) == pytest.approx(1 / 3)
    assert box_iou(np.array(a, np.float32), np.array(b, np.float32)) == pytest.approx(1 / 3)
    assert isinstance(box_iou(np.array(a, np.float32), np.array(b, np.float32)), float)


def test_boxes_without_area_overlap_nothing():
    assert box_iou([5, 5, 5, 5], [5, 5, 5, 5]) == 0.0
