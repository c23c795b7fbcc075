"""ROI masks from detections: classes, confidence, margin, static boxes, soft edges, external boxes."""
import numpy as np
import pytest

from roi_codec_ros.detector import (
    DEFAULT_ROI_CLASSES,
    Detections,
    RoiMaskConfig,
    box_pixel_bounds,
    parse_classes,
    rasterise_boxes,
    roi_mask_from_detections,
    select_roi,
    unknown_classes,
)

NAMES = {0: "person", 1: "bicycle", 2: "car", 9: "traffic light", 11: "stop sign", 56: "chair"}
H, W = 120, 200


def dets(boxes, ids, scores, names=NAMES):
    return Detections(np.array(boxes, np.float32), np.array(ids), np.array(scores, np.float32), names)


def test_mask_is_float32_hw_in_unit_range_and_marks_box_pixels():
    d = dets([[10, 20, 50, 60]], [2], [0.9])
    m = roi_mask_from_detections(d, (H, W), RoiMaskConfig(margin_px=0))
    assert m.shape == (H, W) and m.dtype == np.float32
    assert m.min() == 0.0 and m.max() == 1.0
    assert m[20:60, 10:50].all() and m.sum() == 40 * 40


def test_fractional_boxes_are_rasterised_outward():
    d = dets([[10.5, 20.2, 49.5, 59.9]], [2], [0.9])
    m = roi_mask_from_detections(d, (H, W), RoiMaskConfig(margin_px=0))
    rows, cols = np.nonzero(m)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (10, 49, 20, 59)


def test_classes_select_by_name_case_insensitive_and_by_id():
    d = dets([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [2, 56, 0], [0.9, 0.9, 0.9])
    default = roi_mask_from_detections(d, (H, W), RoiMaskConfig(margin_px=0))
    assert default[5, 5] == 1 and default[5, 25] == 0 and default[5, 45] == 1  # chair is not an ROI class
    only_car = roi_mask_from_detections(d, (H, W), RoiMaskConfig(classes=("CAR",), margin_px=0))
    assert only_car[5, 5] == 1 and only_car[5, 45] == 0
    by_id = roi_mask_from_detections(d, (H, W), RoiMaskConfig(classes=(56,), margin_px=0))
    assert by_id[5, 25] == 1 and by_id[5, 5] == 0
    everything = roi_mask_from_detections(d, (H, W), RoiMaskConfig(classes=None, margin_px=0))
    assert everything[5, 5] == everything[5, 25] == everything[5, 45] == 1


def test_default_classes_are_road_users_and_signals():
    assert {"car", "truck", "bus", "motorcycle", "bicycle", "train", "person", "traffic light", "stop sign"} == set(
        DEFAULT_ROI_CLASSES
    )
    assert unknown_classes(NAMES, ("car", "forklift", 77)) == ["forklift", 77]


def test_confidence_threshold():
    d = dets([[0, 0, 10, 10], [20, 0, 30, 10]], [2, 2], [0.30, 0.60])
    m = roi_mask_from_detections(d, (H, W), RoiMaskConfig(confidence=0.5, margin_px=0))
    assert m[5, 5] == 0 and m[5, 25] == 1
    m = roi_mask_from_detections(d, (H, W), RoiMaskConfig(confidence=0.3, margin_px=0))
    assert m[5, 5] == 1  # threshold is inclusive


def test_margin_grows_boxes_and_is_clipped_to_the_frame():
    d = dets([[50, 50, 60, 60]], [2], [0.9])
    m = roi_mask_from_detections(d, (H, W), RoiMaskConfig(margin_px=5))
    rows, cols = np.nonzero(m)
    assert (cols.min(), cols.max() + 1, rows.min(), rows.max() + 1) == (45, 65, 45, 65)
    edge = dets([[0, 0, 4, 4]], [2], [0.9])
    m = roi_mask_from_detections(edge, (H, W), RoiMaskConfig(margin_px=10))
    assert m[:14, :14].all() and m.sum() == 14 * 14


def test_static_boxes_pixels_and_relative_merge_with_detections():
    d = dets([[0, 0, 10, 10]], [2], [0.9])
    cfg = RoiMaskConfig(margin_px=0, static_boxes=[(100, 100, 120, 110)], static_boxes_rel=[(0.5, 0.0, 1.0, 0.25)])
    m = roi_mask_from_detections(d, (H, W), cfg)
    assert m[5, 5] == 1 and m[105, 110] == 1
    assert m[:30, 100:].all() and m[30, 150] == 0  # 0.25 * 120 = 30 rows, right half of 200 columns
    only_static = roi_mask_from_detections(None, (H, W), cfg)
    assert only_static[5, 5] == 0 and only_static[105, 110] == 1
    assert roi_mask_from_detections(None, (H, W), RoiMaskConfig()).sum() == 0


def test_soft_edges_fall_off_linearly_outside_and_keep_the_box():
    d = dets([[50, 50, 60, 60]], [2], [0.9])
    hard = roi_mask_from_detections(d, (H, W), RoiMaskConfig(margin_px=0))
    soft = roi_mask_from_detections(d, (H, W), RoiMaskConfig(margin_px=0, soft_edge_px=10))
    assert np.all(soft[hard == 1] == 1.0)  # boxes never shrink
    row = soft[55]
    # 1 px right of the box edge (column 60) -> 0.9, 5 px -> 0.5, >= 10 px -> 0
    np.testing.assert_allclose(row[60:71], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0], atol=1e-4)
    assert np.all(np.diff(row[59:75]) <= 0)
    assert soft.min() == 0.0 and soft.max() == 1.0 and soft.dtype == np.float32


def test_external_boxes_with_string_labels_share_the_mask_code():
    ext = Detections.from_boxes([[10, 10, 30, 30], [40, 40, 60, 60], [70, 10, 90, 30]], labels=["Car", "tree", "person"])
    assert ext.names[ext.class_ids[0]] == "Car" and len(set(ext.class_ids.tolist())) == 3
    assert np.all(ext.scores == 1.0)
    m = roi_mask_from_detections(ext, (H, W), RoiMaskConfig(margin_px=0))
    assert m[20, 20] == 1 and m[50, 50] == 0 and m[20, 80] == 1
    # labels matched to an existing model's names keep that model's ids
    ext2 = Detections.from_boxes([[0, 0, 5, 5]], labels=["stop sign"], names=NAMES)
    assert ext2.class_ids[0] == 11
    # centre-xywh input
    ext3 = Detections.from_boxes([[20, 20, 10, 4]], labels=[2], names=NAMES, xywh=True)
    np.testing.assert_allclose(ext3.boxes[0], [15, 18, 25, 22])
    # unlabelled boxes only count when every class is selected
    unl = Detections.from_boxes([[0, 0, 5, 5]])
    assert roi_mask_from_detections(unl, (H, W), RoiMaskConfig()).sum() == 0
    assert roi_mask_from_detections(unl, (H, W), RoiMaskConfig(classes=None, margin_px=0)).sum() == 25


def test_rescaled_detections_follow_the_frame():
    d = dets([[10, 20, 50, 60]], [2], [0.9])
    r = d.rescaled((H, W), (2 * H, W // 2))
    np.testing.assert_allclose(r.boxes[0], [5, 40, 25, 120])


def test_bad_config_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="confidence"):
        RoiMaskConfig(confidence=1.5)
    with pytest.raises(ValueError, match="margin_px"):
        RoiMaskConfig(margin_px=-1)
    with pytest.raises(ValueError, match="static_boxes"):
        RoiMaskConfig(static_boxes=[(10, 10, 5, 20)])
    with pytest.raises(ValueError, match="fractions"):
        RoiMaskConfig(static_boxes_rel=[(0, 0, 2, 1)])
    with pytest.raises(ValueError, match="unknown keys"):
        RoiMaskConfig.from_dict({"margin": 3})
    assert RoiMaskConfig.from_dict({"classes": ["car"], "margin_px": 3}).classes == ("car",)
    with pytest.raises(ValueError, match="xyxy"):
        Detections.from_boxes([[10, 10, 5, 5]])
    with pytest.raises(ValueError, match="labels"):
        Detections.from_boxes([[0, 0, 5, 5]], labels=["car", "bus"])
    with pytest.raises(ValueError, match="shape"):
        roi_mask_from_detections(None, (0, 10))


def test_select_roi_is_the_one_rule_for_boxes_and_mask():
    d = dets([[10, 10, 30, 30], [40, 40, 60, 60], [70, 10, 90, 30], [100, 50, 120, 70]], [2, 56, 0, 2],
             [0.9, 0.9, 0.8, 0.1])
    cfg = RoiMaskConfig(margin_px=2, static_boxes=[(150, 100, 160, 110)], static_boxes_rel=[(0.0, 0.5, 0.1, 1.0)])
    sel = select_roi(d, (H, W), cfg)
    # the car and the person pass; the chair (class) and the 0.1 car (confidence) do not; boxes as detected
    np.testing.assert_array_equal(sel.detections.boxes, [[10, 10, 30, 30], [70, 10, 90, 30]])
    assert [sel.detections.label(i) for i in range(2)] == ["car", "person"]
    assert sel.detections.scores.tolist() == pytest.approx([0.9, 0.8])
    np.testing.assert_allclose(sel.static_boxes, [[150, 100, 160, 110], [0, 60, 20, 120]])
    np.testing.assert_allclose(sel.boxes, [[8, 8, 32, 32], [68, 8, 92, 32], [150, 100, 160, 110], [0, 60, 20, 120]])
    np.testing.assert_array_equal(sel.mask(), roi_mask_from_detections(d, (H, W), cfg))
    np.testing.assert_array_equal(sel.mask(), rasterise_boxes(sel.boxes, H, W))
    assert not sel.empty
    assert select_roi(None, (H, W), RoiMaskConfig()).empty
    assert select_roi(d, (H, W), RoiMaskConfig(classes=("bus",))).empty


def test_box_pixel_bounds_cover_every_touched_pixel_and_clip():
    assert box_pixel_bounds((1.4, 0.0, 3.6, 2.0), 4, 6) == (1, 0, 4, 2)
    assert box_pixel_bounds((-10, -10, 100, 1.0), 4, 6) == (0, 0, 6, 1)
    c0, r0, c1, r1 = box_pixel_bounds((7, 1, 9, 2), 4, 6)  # entirely right of the frame: empty
    assert c1 <= c0


def test_parse_classes_from_command_line_text():
    assert parse_classes("car, person,2") == ("car", "person", 2)
    assert parse_classes("ALL") is None
    assert parse_classes("traffic light") == ("traffic light",)
    with pytest.raises(ValueError, match="no ROI classes"):
        parse_classes(" , ")


def test_overlay_colours_exactly_the_selected_boxes():
    from roi_codec_ros.detector.overlay import OTHER_COLOR, ROI_COLOR, draw_overlay

    d = dets([[10, 50, 40, 90], [100, 50, 130, 90]], [2, 56], [0.9, 0.9])  # a car (ROI class) and a chair
    cfg = RoiMaskConfig(margin_px=0)
    picture = draw_overlay(np.zeros((H, W, 3), np.uint8), d, roi_mask_from_detections(d, (H, W), cfg), cfg)
    assert tuple(picture[70, 10]) == ROI_COLOR  # left edge of the car's box
    assert tuple(picture[70, 100]) == OTHER_COLOR  # left edge of the chair's box


# -- per-class weights (RoiMaskConfig.class_weights) ------------------------------------------------------------
def _binary_reference(boxes, soft_edge_px):
    """The mask rule before class weights: 1 inside every box, linear fall-off from 1 over the soft edge."""
    import cv2

    mask = np.zeros((H, W), np.float32)
    for box in boxes:
        c0, r0, c1, r1 = box_pixel_bounds(box, H, W)
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = 1.0
    if soft_edge_px > 0 and mask.any():
        dist = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        mask = np.clip(1.0 - dist / float(soft_edge_px), 0.0, 1.0).astype(np.float32)
    return mask


SCENE = dets([[10.5, 20.2, 90, 80], [60, 30, 70.7, 45], [150, 5, 180, 100], [-20, 100, 30, 140]], [2, 9, 0, 2],
             [0.9, 0.8, 0.7, 0.6])


@pytest.mark.parametrize("soft_edge_px", [0.0, 6.0])
@pytest.mark.parametrize("weights", [(), {"car": 1.0, 0: 1.0}])
def test_no_or_all_one_class_weights_give_todays_mask_bit_for_bit(soft_edge_px, weights):
    config = RoiMaskConfig(margin_px=3, soft_edge_px=soft_edge_px, static_boxes=((0, 110, 40, 120),), class_weights=weights)
    selection = select_roi(SCENE, (H, W), config)
    got = selection.mask()
    want = _binary_reference(selection.boxes, soft_edge_px)
    assert got.dtype == np.float32 and got.tobytes() == want.tobytes()
    assert np.all(selection.weights == 1.0)


def test_class_weights_set_the_mask_inside_each_class_and_overlaps_take_the_max():
    config = RoiMaskConfig(margin_px=0, class_weights={"CAR": 0.5, "traffic light": 0.9})
    m = roi_mask_from_detections(SCENE, (H, W), config)
    assert m[50, 30] == np.float32(0.5)  # car only
    assert m[40, 65] == np.float32(0.9)  # the traffic light inside the car: the larger weight
    assert m[50, 160] == 1.0  # person: not listed, weight 1
    assert m[5, 5] == 0.0
    assert set(np.unique(m).tolist()) == {0.0, 0.5, np.float32(0.9).item(), 1.0}
    # a light weight below the car's does not lower the car's pixels
    low = roi_mask_from_detections(SCENE, (H, W), RoiMaskConfig(margin_px=0, class_weights={"car": 0.5, 9: 0.2}))
    assert low[40, 65] == np.float32(0.5)
    # static boxes keep weight 1 whatever the car weight
    static = RoiMaskConfig(margin_px=0, static_boxes=((20, 40, 30, 50),), class_weights={"car": 0.25})
    assert roi_mask_from_detections(SCENE, (H, W), static)[45, 25] == 1.0


def test_class_weight_by_id_wins_over_the_name_and_zero_drops_the_class():
    both = RoiMaskConfig(margin_px=0, class_weights={2: 0.3, "car": 0.7})
    assert roi_mask_from_detections(SCENE, (H, W), both)[50, 30] == np.float32(0.3)
    dropped = select_roi(SCENE, (H, W), RoiMaskConfig(margin_px=0, class_weights={"car": 0.0}))
    assert list(dropped.detections.class_ids) == [9, 0]  # no car left: a weight-0 class is not ROI
    assert dropped.mask()[50, 30] == 0.0 and list(dropped.weights) == [1.0, 1.0]


def test_soft_edge_falls_off_from_the_box_weight():
    d = dets([[50, 40, 70, 60], [120, 40, 140, 60]], [2, 0], [0.9, 0.9])
    config = RoiMaskConfig(margin_px=0, soft_edge_px=10, class_weights={"car": 0.5})
    m = roi_mask_from_detections(d, (H, W), config)
    car_row, person_row = m[50, 30:80], m[50, 100:150]
    assert np.all(m[40:60, 50:70] == np.float32(0.5)) and np.all(m[40:60, 120:140] == 1.0)
    # 1 px outside the car's edge: 0.5 * (1 - 1/10); 10 px out: 0
    assert m[50, 70] == pytest.approx(0.5 * 0.9) and m[50, 79] == 0.0 and m[50, 49] == pytest.approx(0.45)
    assert m[50, 140] == pytest.approx(0.9) and m[50, 115] == pytest.approx(0.5)
    assert np.all(np.diff(car_row[:20]) >= 0) and np.all(np.diff(person_row[:20]) >= 0)
    assert m.max() == 1.0 and m.dtype == np.float32
    # where fall-offs meet, the larger of weight * fall-off wins: the person's edge over the car's interior
    near = dets([[50, 40, 70, 60], [72, 40, 90, 60]], [2, 0], [0.9, 0.9])
    m = roi_mask_from_detections(near, (H, W), config)
    assert m[50, 69] == pytest.approx(max(0.5, 1.0 - 3 / 10))  # 3 px from the person box


def test_class_weights_validation_errors_are_clear():
    for bad, match in [({"car": 1.5}, "in \\[0, 1\\]"), ({"car": -0.1}, "in \\[0, 1\\]"),
                       ({"car": float("nan")}, "in \\[0, 1\\]"), ({"car": "high"}, "must be a number"),
                       ({"car": True}, "must be a number"), ({True: 0.5}, "name or an id"),
                       ({-1: 0.5}, "ids are >= 0"), ({" ": 0.5}, "non-empty name"), ({2.5: 0.5}, "name or an id"),
                       ({"car": 0.5, "CAR": 0.4}, "given twice"), ([("car",)], "pairs")]:
        with pytest.raises(ValueError, match=f"class_weights.*{match}"):
            RoiMaskConfig(class_weights=bad)
    # a mapping and pairs are the same config (stored sorted: hashable, equal)
    assert RoiMaskConfig(class_weights={"car": 0.5, 9: 1}) == RoiMaskConfig(class_weights=[(9, 1.0), ("car", 0.5)])
    assert RoiMaskConfig.from_dict({"class_weights": {"person": 1}}).class_weights == (("person", 1.0),)


def test_parse_class_weights_text_and_parameter_items():
    from roi_codec_ros.detector.roi_mask import class_weight_keys, parse_class_weight_items, parse_class_weights

    assert parse_class_weights("person=1.0, traffic light=0.9,car=0.5, 7=0") == (
        (7, 0.0), ("car", 0.5), ("person", 1.0), ("traffic light", 0.9))
    assert parse_class_weights("") == parse_class_weights(" none ") == ()
    assert parse_class_weight_items(["person=1", "car = 0.25"]) == (("car", 0.25), ("person", 1.0))
    assert parse_class_weight_items([]) == ()
    for bad in ["car", "car=", "=0.5", "car=half", "car=2"]:
        with pytest.raises(ValueError, match="car|class weight"):
            parse_class_weights(bad)
    # unknown names are found the same way as unknown roi classes
    config = RoiMaskConfig(class_weights=parse_class_weights("car=0.5,forklift=0.2,77=1"))
    assert unknown_classes(NAMES, class_weight_keys(config)) == [77, "forklift"]
