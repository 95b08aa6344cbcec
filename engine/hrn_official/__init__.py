"""Clean-room HRN: loads the official release strictly and runs its networks (CPU or CUDA).

Modules: :mod:`.layout` (file names/locations), :mod:`.checkpoint` (strict loading),
:mod:`.net_recon`, :mod:`.pix2pix`, :mod:`.deretouch` (networks), :mod:`.bfm` (face model,
camera, UV files), :mod:`.align` (5-point crop), :mod:`.face_mask` (MediaPipe face-region
mask), :mod:`.uv` (unwrap/sampling quirks), :mod:`.model` (the official inference wired),
:mod:`.convert` (official frame and units -> ours), :mod:`.reconstruct` (photo ->
:class:`engine.result.FaceReconstruction`), :mod:`.assets` (check/download, also
``python -m engine.hrn_official assets check DIR``).
"""
