"""HRN for Blender engine: photos of a face in, a detailed textured 3D head out (no bpy)."""
import os

# OpenMP threads that spin while waiting for work made the fits 10x slower whenever another
# process used the CPU (measured: fast quality 201 s instead of 19 s on two busy cores);
# passive waiting costs nothing on an idle machine. Takes effect when the engine is imported
# before torch (the CLI, the Blender worker), and never overrides the user's own setting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
