"""The model of CVAT's XML importer (``tests/cvat_xml.py``) on a hand-written file: read back
exactly, and malformed files refused as CVAT refuses (or fails on) them."""

from __future__ import annotations

import numpy as np
import pytest

from cvat_xml import CvatImportError, Label, Shape, Task, Track, decode_mask, load_cvat_xml

GOOD = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id><name>clip</name><size>10</size><mode>interpolation</mode>
      <start_frame>0</start_frame><stop_frame>9</stop_frame>
      <labels>
        <label><name>car</name><type>rectangle</type><attributes>
          <attribute><name>parked</name><mutable>False</mutable><input_type>checkbox</input_type>
            <default_value>false</default_value><values>false</values></attribute>
          <attribute><name>speed</name><mutable>True</mutable><input_type>number</input_type>
            <default_value>0</default_value><values>0\n100\n1</values></attribute>
        </attributes></label>
        <label><name>person</name><type>polygon</type><attributes/></label>
        <label><name>dog</name><type>mask</type><attributes/></label>
      </labels>
      <original_size><width>8</width><height>6</height></original_size>
    </task>
  </meta>
  <track id="40" label="car" source="auto" group_id="3">
    <box frame="1" keyframe="1" outside="0" occluded="0" xtl="1.50" ytl="2.25" xbr="5"
         ybr="4.75" z_order="2">
      <attribute name="parked">True</attribute>
      <attribute name="speed">12.5</attribute>
      <attribute name="colour">red</attribute>
    </box>
    <box frame="3" keyframe="0" outside="0" occluded="0" xtl="2" ytl="2" xbr="6" ybr="5"/>
    <box frame="4" keyframe="1" occluded="1" xtl="3" ytl="1" xbr="7.5" ybr="4"/>
    <box frame="6" keyframe="1" outside="1" occluded="0" xtl="3" ytl="1" xbr="7.5" ybr="4">
      <attribute name="parked">false</attribute>
    </box>
  </track>
  <track id="41" label="person">
    <polygon frame="2" keyframe="1" outside="0" occluded="0" points="1.00,1.00;6.00,1.00;3.50,5.00"
             z_order="0"/>
    <polygon frame="5" keyframe="1" outside="1" occluded="0" points="1.00,1.00;6.00,1.00;3.50,5.00"
             z_order="0"/>
  </track>
  <image id="3" name="frame_000003" width="8" height="6">
    <mask label="dog" source="auto" occluded="0" rle="1, 2, 3, 2" left="2" top="1" width="4"
          height="2" z_order="1" group_id="5"/>
    <box label="car" occluded="1" xtl="0" ytl="0" xbr="2" ybr="2"/>
    <tag label="person"/>
  </image>
</annotations>
"""


def test_a_hand_written_file_reads_back_exactly(tmp_path):
    path = tmp_path / "annotations.xml"
    path.write_text(GOOD)
    read = load_cvat_xml(path)
    assert read == load_cvat_xml(GOOD.encode())

    task = read.task
    assert (task.name, task.size, task.width, task.height, task.mode, task.start_frame) == (
        "clip", 10, 8, 6, "interpolation", 0)
    assert [(lab.name, lab.type) for lab in task.labels] == [
        ("car", "rectangle"), ("person", "polygon"), ("dog", "mask")]
    assert task.labels[0].attributes["parked"].mutable is False
    assert task.labels[0].attributes["speed"].input_type == "number"

    car, person = read.tracks
    # the XML's id and source are not CVAT's: it numbers tracks itself and marks them "file";
    # the shape with keyframe="0" is dropped; an immutable attribute goes to the track (the
    # last keyframe's value wins), a mutable one stays on its shape, one the label does not
    # define is dropped
    assert car == Track("car", [
        Shape("rectangle", 1, [1.5, 2.25, 5.0, 4.75], z_order=2, attributes={"speed": "12.5"}),
        Shape("rectangle", 4, [3.0, 1.0, 7.5, 4.0], occluded=True),
        Shape("rectangle", 6, [3.0, 1.0, 7.5, 4.0], outside=True),
    ], group=3, attributes={"parked": "false"})
    assert car.frame == 1 and car.source == "file"
    triangle = [1.0, 1.0, 6.0, 1.0, 3.5, 5.0]
    assert person == Track("person", [Shape("polygon", 2, triangle),
                                      Shape("polygon", 5, triangle, outside=True)])

    mask, box = read.shapes
    assert mask == Shape("mask", 3, [1, 2, 3, 2, 2, 1, 5, 2], label="dog", z_order=1, group=5)
    expected = np.zeros((6, 8), dtype=bool)
    expected[1, 3:5] = True  # runs 1 off, 2 on, 3 off, 2 on over the 4x2 box at (2, 1)
    expected[2, 4:6] = True
    assert mask.mask.dtype == bool and np.array_equal(mask.mask, expected)
    assert box == Shape("rectangle", 3, [0.0, 0.0, 2.0, 2.0], label="car", occluded=True)
    assert box.mask is None and read.shapes_at(3) == [mask, box] and read.shapes_at(2) == []
    assert read.tags == [(3, "person", 0)]


def test_mask_decoding_follows_cvat_over_the_box_row_by_row():
    points = [0, 3, 1, 2, 1, 0, 3, 1]  # on first: 3 on, 1 off, 2 on over the 3x2 box at (1, 0)
    mask = decode_mask(points, 3, 4)
    assert mask.tolist() == [[False, True, True, True], [False, False, True, True],
                             [False] * 4]


def test_a_mask_track_becomes_one_shape_on_its_first_keyframe():
    xml = GOOD.replace("<image id=", """<track id="9" label="dog" group_id="4">
    <mask frame="7" keyframe="1" outside="0" occluded="0" rle="0,8" left="0" top="0" width="4"
          height="2"/>
    <mask frame="8" keyframe="1" outside="0" occluded="0" rle="1,1" left="0" top="0" width="2"
          height="1"/>
  </track>
  <image id=""")
    read = load_cvat_xml(xml.encode())
    assert len(read.tracks) == 2 and len(read.shapes) == 3
    shape = read.shapes[0]
    assert shape == Shape("mask", 7, [0, 8, 0, 0, 3, 1], label="dog")  # group 0, not the track's
    assert shape.mask.sum() == 8 and shape.mask[:2, :4].all()


@pytest.mark.parametrize("name, index, frame", [
    ("frame_000004.png", "3", 4),  # the name wins: it is the task's frame name
    ("frame_4", "6", 6),  # not a frame name: the id is the frame index
    ("images/x.jpg", "2", 2),
    ("frame_8", "x", 8),  # a video's last resort: the number after frame_
])
def test_an_image_is_matched_to_a_frame_as_cvat_does(name, index, frame):
    xml = GOOD.replace('id="3" name="frame_000003"', f'id="{index}" name="{name}"')
    assert {s.frame for s in load_cvat_xml(xml.encode()).shapes} == {frame}


def test_the_task_given_is_the_one_checked():
    task = Task([Label("car"), Label("person")], size=10, width=8, height=6)
    with pytest.raises(CvatImportError, match="Label 'dog' is not registered for this task"):
        load_cvat_xml(GOOD.encode(), task)
    without_dog = GOOD[:GOOD.index("  <image")] + "</annotations>\n"
    assert len(load_cvat_xml(without_dog.encode(), task).tracks) == 2
    short = Task([Label("car"), Label("person")], size=5)
    with pytest.raises(CvatImportError, match="Unknown frame 6"):
        load_cvat_xml(without_dog.encode(), short)


@pytest.mark.parametrize("old, new, message", [
    ('track id="40" label="car"', 'track id="40" label="truck"',
     "Label 'truck' is not registered for this task"),
    ('<mask label="dog"', '<mask label="cat"', "Label 'cat' is not registered"),
    ('<tag label="person"/>', '<tag label="bus"/>', "Label 'bus' is not registered"),
    ('frame="6" keyframe="1" outside="1"', 'frame="10" keyframe="1" outside="1"',
     "Unknown frame 10"),
    ('id="3" name="frame_000003"', 'id="10" name="frame_000010"',
     "Could not match item id: 'frame_000010' with any task frame"),
    ('track id="41" label="person"', 'track id="41"', "<track> has no 'label'"),
    ('frame="2" keyframe="1" ', 'frame="2" ', "<polygon> has no 'keyframe'"),
    ('xbr="5"', 'xbe="5"', "<box> has no 'xbr'"),
    ('<mask label="dog"', '<mask', "<mask> has no 'label'"),
    ('id="3" name="frame_000003"', 'id="3"', "<image> has no 'name'"),
    ('xtl="1.50"', 'xtl="1,50"', r"xtl='1,50': load_anno's float\(\) fails"),
    ('z_order="2"', 'z_order="2.0"', r"z_order='2.0': load_anno's int\(\) fails"),
    ('rle="1, 2, 3, 2"', 'rle="1, 2, 3, 2.0"', r"rle=' 2.0': load_anno's int\(\) fails"),
    ('<polygon frame="5" keyframe="1"', '<polygon frame="5" keyframe="0"', None),  # dropped
    ('<polygon frame="2" keyframe="1"', '<polygon frame="2" keyframe="0"', None),
    ('<attribute name="parked">True', '<attribute name="parked">yes',
     "Failed to convert attribute 'car'='yes'"),
    ('rle="1, 2, 3, 2"', 'rle="1, 2, 3, 1"', "mask runs sum to 7, its 4x2 box has 8 pixels"),
    ('rle="1, 2, 3, 2"', 'rle="1, 2, 3, 3"', "mask runs sum to 9"),
    ('left="2" top="1"', 'left="5" top="1"', "mask box 5,1,8,2 is not inside the 8x6 frame"),
    ('left="2" top="1"', 'left="2" top="-1"', "is not inside"),
    ("<annotations>", '<!DOCTYPE a [<!ENTITY e "x">]>\n<annotations>', "defusedxml refuses"),
    ("</annotations>", '<box label="car" xtl="0" ytl="0" xbr="1" ybr="1"/></annotations>',
     "<box> outside any track or image"),
])
def test_malformed_files_are_refused_as_cvat_refuses_them(old, new, message):
    assert GOOD.count(old) == 1, old
    xml = GOOD.replace(old, new).encode()
    if message is None:
        load_cvat_xml(xml)
        return
    with pytest.raises(CvatImportError, match=message):
        load_cvat_xml(xml)


def test_without_meta_the_task_must_be_given():
    xml = GOOD[:GOOD.index("  <meta>")] + GOOD[GOOD.index("</meta>") + 8:]
    with pytest.raises(CvatImportError, match=r"no <meta><task>"):
        load_cvat_xml(xml.encode())
    task = Task([Label("car"), Label("person"), Label("dog")], size=10, width=8, height=6)
    read = load_cvat_xml(xml.encode(), task)
    assert len(read.tracks) == 2 and read.tracks[0].attributes == {}  # no such attributes


def test_a_track_of_interpolated_shapes_only_fails_as_in_cvat():
    xml = GOOD.replace('<polygon frame="2" keyframe="1"', '<polygon frame="2" keyframe="0"')
    xml = xml.replace('<polygon frame="5" keyframe="1"', '<polygon frame="5" keyframe="0"')
    with pytest.raises(CvatImportError, match="'person' track without keyframes"):
        load_cvat_xml(xml.encode())


@pytest.mark.parametrize("tag", ["cuboid", "skeleton"])
def test_shapes_not_modelled_are_refused(tag):
    xml = GOOD.replace('<box label="car" occluded="1"', f'<{tag} label="car" occluded="1"')
    with pytest.raises(NotImplementedError, match="not modelled"):
        load_cvat_xml(xml.encode())
