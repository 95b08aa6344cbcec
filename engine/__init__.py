"""HRN for Blender engine: photos of a face in, a detailed textured 3D head out (no bpy)."""
