"""Mesh creation: engine topology and UVs written in bulk with ``foreach_set``."""
import bpy
import numpy as np

UV_MAP = "UVMap"


def build_mesh(name: str, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray,
               face_uvs: np.ndarray, face_material: np.ndarray | None = None) -> bpy.types.Mesh:
    """A smooth-shaded mesh with one UV map.

    Args:
        vertices: ``[V, 3]`` Blender-space positions (metres).
        faces: ``[F, K]`` int vertex indices, K = 3 or 4, counter-clockwise from outside; with
            K = 4, -1 in the last column marks a triangle (the engine's mixed layout).
        uvs: ``[T, 2]`` UV coordinates, origin bottom-left (Blender's convention too).
        face_uvs: ``[F, K]`` int indices into ``uvs`` per face corner (-1 where ``faces`` is).
        face_material: optional ``[F]`` material slot index of each face.
    """
    faces, face_uvs = np.asarray(faces), np.asarray(face_uvs)
    corners = faces >= 0
    counts = corners.sum(1)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", _flat(vertices, np.float32))
    mesh.loops.add(int(counts.sum()))
    mesh.loops.foreach_set("vertex_index", _flat(faces[corners], np.int32))
    mesh.polygons.add(len(faces))
    # loop_total is derived from the next polygon's loop_start (read-only since Blender 4.0).
    mesh.polygons.foreach_set("loop_start", _flat(np.concatenate([[0], np.cumsum(counts)[:-1]]), np.int32))
    if face_material is not None:
        mesh.polygons.foreach_set("material_index", _flat(face_material, np.int32))
    uv_layer = mesh.uv_layers.new(name=UV_MAP)
    uv_layer.uv.foreach_set("vector", _flat(uvs[face_uvs[corners]], np.float32))
    mesh.update()
    if mesh.validate(verbose=False):
        raise ValueError(f"The reconstruction's mesh '{name}' has invalid topology.")
    mesh.shade_smooth()
    return mesh


def _flat(array: np.ndarray, dtype) -> np.ndarray:
    """C-contiguous, flat, of the dtype ``foreach_set`` expects (no silent per-item conversion)."""
    return np.ascontiguousarray(array, dtype=dtype).ravel()
