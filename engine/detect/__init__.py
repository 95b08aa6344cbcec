"""Face detection on a photo: MediaPipe's 478 landmarks and face choice
(:mod:`engine.detect.landmarks`, pixel coordinates of the photo) and the face-region mask that
leaves hair, glasses and hands out of the fits (:mod:`engine.detect.face_region`, a boolean
``[H,W]`` mask of the photo). Detection is the first stage of every pipeline.
"""
