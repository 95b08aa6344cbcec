"""UV-space machinery shared by the levels: rasterizing the head's UV layout into texel maps
(:mod:`.raster`: per-texel triangle and barycentrics, map sampling), a photo unwrapped into
UV space with per-texel visibility (:mod:`.unwrap`, producing :mod:`.observation`'s
:class:`~engine.uv.observation.UVObservation`). Maps are ``[S,S,C]``, top row first
(:mod:`engine.conventions`).
"""
