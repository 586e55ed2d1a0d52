"""The entries of the predictions table (THEORY.md §14), grouped by theme; each module defines ``PREDICTIONS``.

The framework (``Prediction``, ``Outcome``, the runner and the registry) is :mod:`convtheory.theory.predictions`.
Modules: ``maml_exact`` (1-7), ``maml_estimators`` (8-12, 28), ``anil_imaml`` (13-16), ``hypergradients``
(17-22), ``bilevel_methods`` (23, 24 and MRBO/VRBO against stocBiO), ``esj_hd`` (25-27).
"""
