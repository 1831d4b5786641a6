"""The hyperteacher family (Redhardt, Akram & Schug 2025): its claims share setup.py's recipe."""

from bindbench.experiments.hyperteacher import composition, neurons, preferences, scaling  # noqa: F401  (they register)
