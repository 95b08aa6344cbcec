"""Turns a FaceReconstruction into Blender data: mesh, shape keys, images, material, modifiers,
camera and the detail controls. Entry point: :func:`build.build_head`."""
