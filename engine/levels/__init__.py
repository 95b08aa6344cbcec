"""The levels of the hierarchical representation, one module per fitted stage, in run order:
:mod:`.coarse` (identity, expression, pose, camera from landmarks), :mod:`.lighting` (SH
lighting and base albedo), :mod:`.mid` (UV deformation map, metres), :mod:`.high` (UV
displacement map along the normal, metres), :mod:`.albedo` (de-lit UV texture) and
:mod:`.multiview` (identity check and visibility-weighted fusion of several photos). Each takes
arrays and returns a fit; :mod:`engine.pipeline` runs them in order.
"""
