"""verl-perception: Perception-R1 rewards, data and evaluation for verl."""

__version__ = "0.1.0"
