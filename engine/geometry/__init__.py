"""Pure geometry helpers (numpy or torch): rigid and similarity transforms, projection and
vertex normals (:mod:`.transforms`), mesh adjacency, smoothing and UV-seam bookkeeping
(:mod:`.mesh_ops`), and second-order spherical-harmonics lighting (:mod:`.sh`). Lengths in
metres; no photo or model file is read here.
"""
