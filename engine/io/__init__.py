"""Files in and out: photos read into :class:`engine.io.image_io.Photo` (orientation, colour,
alpha; sRGB ``[H,W,3]`` float32 in [0, 1], top row first) and the minimal OpenEXR reader/writer
(:mod:`engine.io.exr`, float32 multi-channel images) that the result's deformation map uses.
No reconstruction logic lives here.
"""
