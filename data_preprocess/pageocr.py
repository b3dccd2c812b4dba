"""page-level OCR -> verl parquet. Thin wrapper: the logic is verl_perception.preprocess.pageocr (installed with the package).

Run `python data_preprocess/pageocr.py --help` for the options; docs/data.md describes the raw layout.
"""

from verl_perception.preprocess.pageocr import main

if __name__ == "__main__":
    main()
