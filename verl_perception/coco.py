"""The 80 COCO detection categories: names in the official order, with their official ids.

COCO's category ids run from 1 to 90 with gaps (ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 are
unused), so a name's position in :data:`COCO_NAMES` is *not* its id: evaluation with pycocotools
must use :data:`COCO_NAME_TO_ID`. Names are the annotation files' ``categories[].name`` strings,
lower case, words separated by one space; the detection reward uses them as its label vocabulary.
"""

from __future__ import annotations

# (id, name) exactly as in instances_{train,val}2017.json "categories".
COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"),
    (6, "bus"), (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"),
    (11, "fire hydrant"), (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"),
    (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"),
    (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"),
    (35, "skis"), (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"),
    (40, "baseball glove"), (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"),
    (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"),
    (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"),
    (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"),
    (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"),
    (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"),
    (75, "remote"), (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"),
    (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"), (85, "clock"),
    (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)  # fmt: skip

COCO_NAMES: tuple[str, ...] = tuple(name for _, name in COCO_CATEGORIES)
COCO_NAME_TO_ID: dict[str, int] = {name: cid for cid, name in COCO_CATEGORIES}
COCO_ID_TO_NAME: dict[int, str] = {cid: name for cid, name in COCO_CATEGORIES}

assert len(COCO_NAMES) == 80 and len(set(COCO_NAMES)) == 80
