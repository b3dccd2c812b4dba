"""Synthetic shapes grounding task (generated, no download) -> verl parquet. Thin wrapper: the logic is verl_perception.preprocess.synthetic_shapes (installed with the package).

Run `python data_preprocess/synthetic_shapes.py --help` for the options; docs/data.md describes the task.
"""

from verl_perception.preprocess.synthetic_shapes import main

if __name__ == "__main__":
    main()
