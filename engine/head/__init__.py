"""Head models: the interface every head implements (:mod:`engine.head.model`), the linear
morphable head that implements it and loads the built-in ICT head (:mod:`engine.head.linear`),
Catmull-Clark subdivision of mixed triangle/quad meshes (:mod:`engine.head.subdivision`), and
the Multi-PIE 68 -> MediaPipe landmark table (:mod:`engine.head.multipie68`). The built-in
model file and its MIT licence notice are in ``engine/head/data/``.
"""
