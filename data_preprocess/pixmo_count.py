"""PixMo-Count counting -> verl parquet. Thin wrapper: the logic is verl_perception.preprocess.pixmo_count (installed with the package).

Run `python data_preprocess/pixmo_count.py --help` for the options; docs/data.md describes the raw layout.
"""

from verl_perception.preprocess.pixmo_count import main

if __name__ == "__main__":
    main()
