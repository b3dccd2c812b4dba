"""RefCOCO / RefCOCO+ / RefCOCOg grounding -> verl parquet. Thin wrapper: the logic is verl_perception.preprocess.refcoco (installed with the package).

Run `python data_preprocess/refcoco.py --help` for the options; docs/data.md describes the raw layout.
"""

from verl_perception.preprocess.refcoco import main

if __name__ == "__main__":
    main()
