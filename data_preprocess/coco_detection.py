"""COCO detection -> verl parquet. Thin wrapper: the logic is verl_perception.preprocess.coco_detection (installed with the package).

Run `python data_preprocess/coco_detection.py --help` for the options; docs/data.md describes the raw layout.
"""

from verl_perception.preprocess.coco_detection import main

if __name__ == "__main__":
    main()
