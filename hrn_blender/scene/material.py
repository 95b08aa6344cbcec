"""The head material: Principled BSDF with the albedo texture, and the displacement map wired
for material displacement ("Displacement and Bump").

One small function per socket feature, glTF-importer style; nodes have fixed names so the
detail controls (scene/controls.py) can drive them.
"""
import bpy

from .images import DISPLACEMENT_MIDLEVEL
from .mesh import UV_MAP

ALBEDO_NODE = "Albedo"
TINT_NODE = "Albedo tint"
DISPLACEMENT_MAP_NODE = "Displacement map"
DISPLACEMENT_NODE = "Displacement"
# ShaderNodeMix (data_type RGBA) socket indices: inputs 6/7 = colour A/B, output 2 = colour.
_MIX_A, TINT_COLOR_INPUT, _MIX_RESULT = 6, 7, 2


def build_material(name: str, albedo: bpy.types.Image, displacement: bpy.types.Image,
                   scale: float) -> bpy.types.Material:
    """A node material for the head.

    Args:
        albedo: sRGB albedo image.
        displacement: Non-Color displacement image (value - midlevel) * scale = metres.
        scale: metres per unit of the displacement image.
    """
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):  # node materials are the only kind from 5.0 on
        material.use_nodes = True
    tree = material.node_tree
    tree.nodes.clear()
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.inputs["Roughness"].default_value = 0.55
    tree.links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    uv = tree.nodes.new("ShaderNodeUVMap")
    uv.uv_map = UV_MAP
    base_color(tree, uv, albedo, bsdf)
    height_displacement(tree, uv, displacement, scale, output)
    # True displacement of the subdivided mesh plus bump for detail finer than its faces.
    material.displacement_method = "BOTH"
    _layout(uv, output)
    return material


def base_color(tree: bpy.types.NodeTree, uv: bpy.types.Node, image: bpy.types.Image,
               bsdf: bpy.types.Node) -> None:
    """UV -> albedo texture -> multiply by the tint colour -> Base Color."""
    texture = _image_node(tree, ALBEDO_NODE, image, uv)
    tint = tree.nodes.new("ShaderNodeMix")
    tint.name = tint.label = TINT_NODE
    tint.data_type = "RGBA"
    tint.blend_type = "MULTIPLY"
    tint.inputs[0].default_value = 1.0
    tint.inputs[TINT_COLOR_INPUT].default_value = (1.0, 1.0, 1.0, 1.0)
    tree.links.new(texture.outputs["Color"], tint.inputs[_MIX_A])
    tree.links.new(tint.outputs[_MIX_RESULT], bsdf.inputs["Base Color"])


def height_displacement(tree: bpy.types.NodeTree, uv: bpy.types.Node, image: bpy.types.Image,
                        scale: float, output: bpy.types.Node) -> None:
    """UV -> displacement texture -> Displacement node (midlevel, scale) -> output Displacement."""
    texture = _image_node(tree, DISPLACEMENT_MAP_NODE, image, uv)
    displace = tree.nodes.new("ShaderNodeDisplacement")
    displace.name = displace.label = DISPLACEMENT_NODE
    displace.inputs["Midlevel"].default_value = DISPLACEMENT_MIDLEVEL
    displace.inputs["Scale"].default_value = scale
    tree.links.new(texture.outputs["Color"], displace.inputs["Height"])
    tree.links.new(displace.outputs["Displacement"], output.inputs["Displacement"])


def _image_node(tree: bpy.types.NodeTree, name: str, image: bpy.types.Image,
                uv: bpy.types.Node) -> bpy.types.Node:
    node = tree.nodes.new("ShaderNodeTexImage")
    node.name = node.label = name
    node.image = image
    node.extension = "EXTEND"
    tree.links.new(uv.outputs["UV"], node.inputs["Vector"])
    return node


def _layout(start: bpy.types.Node, end: bpy.types.Node, spacing: float = 300.0) -> None:
    """Place nodes in columns by their link distance from ``start`` (left) towards ``end``."""
    column = {start: 0}
    pending = [start]
    while pending:
        node = pending.pop()
        for out in node.outputs:
            for link in out.links:
                nxt = link.to_node
                if column.get(nxt, -1) < column[node] + 1:
                    column[nxt] = column[node] + 1
                    pending.append(nxt)
    rows: dict[int, int] = {}
    for node, col in column.items():
        node.location = (col * spacing, -rows.get(col, 0) * spacing)
        rows[col] = rows.get(col, 0) + 1
