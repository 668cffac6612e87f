"""The private kernel: shared mechanics that every room of the package may import.

It imports no room (``scores``, ``manifold``, ``attr``, ``metrics``, ``training``, ``analysis``):
linear algebra (:mod:`._linalg`), automatic differentiation (:mod:`._autodiff`), targets,
validation, tensor plumbing, atomic I/O, model-state preservation and the Captum compatibility
layer live here, each written once.
"""
