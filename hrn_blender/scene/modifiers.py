"""High-frequency detail in the viewport: Subdivision Surface, then Displace through the UV map."""
import bpy

from .images import DISPLACEMENT_MIDLEVEL
from .mesh import UV_MAP

SUBDIVISION = "Subdivision"
DISPLACE = "Displace"


def add_detail_modifiers(obj: bpy.types.Object, displacement: bpy.types.Image, scale: float,
                         vertex_group: str) -> tuple[bpy.types.Modifier, bpy.types.Modifier]:
    """Append Subdivision Surface then Displace (midlevel 0.5, strength = ``scale`` metres),
    the latter limited to ``vertex_group`` (the skin: eyes, teeth and lashes stay as they are).

    The Displace modifier is for the viewport and exports only: at render time the material's
    "Displacement and Bump" displaces the same subdivided mesh with the same map, and running
    both would apply the detail twice.
    """
    subdivision = obj.modifiers.new(SUBDIVISION, "SUBSURF")
    subdivision.levels = 1
    subdivision.render_levels = 2
    texture = bpy.data.textures.new(displacement.name, "IMAGE")
    texture.image = displacement
    texture.extension = "EXTEND"
    displace = obj.modifiers.new(DISPLACE, "DISPLACE")
    displace.texture = texture
    displace.texture_coords = "UV"
    displace.uv_layer = UV_MAP
    displace.direction = "NORMAL"
    displace.mid_level = DISPLACEMENT_MIDLEVEL
    displace.strength = scale
    displace.vertex_group = vertex_group
    displace.show_render = False
    return subdivision, displace
