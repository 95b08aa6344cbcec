"""Head models: the parametric head the coarse level fits (:mod:`engine.head.model`: quad mesh,
identity and expression bases in metres, landmark correspondence, loading from ``data/``) and
its Catmull-Clark subdivision (:mod:`engine.head.subdivision`, sparse linear operators). The
model files and their licences are in ``engine/head/data/``.
"""
