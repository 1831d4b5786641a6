"""The objects family: scenes, slots and the binding of attributes to objects (Greff et al.
2020's segregation and representation); its claims share setup.py's recipe."""

from bindbench.experiments.objects import (  # noqa: F401  (they register)
    binding_codes,
    binding_images,
    segregation,
    slot_probe,
)
