"""Materials of the head's parts besides the skin: eyes, cornea, teeth, gums, tongue, mouth
socket and eyelashes (the built-in ICT head has them; a face-only head such as BFM does not).

All are procedural (no image files), driven by the part's UVs so that they follow the eyes
when the eyeLook shape keys turn them:

* **sclera**: the eyeball's outer shell, off-white with a faint pink towards its back;
* **cornea**: the transparent bulge of that shell in front of the iris (glass-like, so
  highlights sit on it as on a real eye);
* **iris**: the inner sphere, polar UVs about (0.5, 0.5): a black pupil, the iris colour with
  darker radial streaks and a dark limbal ring, white beyond. Its radii scale with the
  measured iris size;
* **lashes**: the ICT lash strips (six bands of UV, each ``1/6`` high with the root at its
  top; the upper three are the upper lids'): thin dark strands, alpha-masked, tapering to the
  tip, the lower ones shorter and sparser;
* **teeth**, **gums**, **tongue**, **mouth**: plain subsurface-scattering colours.

Node names are fixed (:data:`IRIS_COLOR_NODE`, ...) so tests and users can find them.
"""
from typing import Sequence

import bpy

from ..engine_api import result as engine_result
from .mesh import UV_MAP

#: Colours (sRGB) of the parts without a measured colour (the engine's, for the OBJ export too).
PART_SRGB = engine_result.PART_SRGB

IRIS_COLOR_NODE = "Iris colour"
SCLERA_NODE = "Sclera"
IRIS_SCALE_NODE = "Iris size"
#: UV radii (polar layout of ICT's inner eye sphere): pupil edge and limbus at iris scale 1.
PUPIL_UV_RADIUS, LIMBUS_UV_RADIUS = 0.12, 0.44
#: Lash strands per unit of U in each upper and lower strip (each eye's strips span half the
#: U range; three strips per lid).
UPPER_LASH_STRANDS, LOWER_LASH_STRANDS = 110.0, 60.0



def srgb_to_linear(c: Sequence[float]) -> tuple[float, float, float, float]:
    """sRGB triple in [0, 1] -> linear RGBA (Blender's colour sockets are linear)."""
    lin = [x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in c]
    return (*lin, 1.0)


def part_material(name: str, part: str, iris_srgb: Sequence[float], sclera_srgb: Sequence[float],
                  iris_scale: float) -> bpy.types.Material:
    """The material of one part (``part`` one of sclera, cornea, iris, teeth, gums, tongue,
    mouth, lashes), named ``name``; the eye colours are sRGB triples, ``iris_scale`` the
    measured iris radius over the model's."""
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True
    tree = material.node_tree
    tree.nodes.clear()
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
    tree.links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    if part == "sclera":
        _sclera(tree, bsdf, sclera_srgb)
    elif part == "cornea":
        bsdf.inputs["Base Color"].default_value = (1.0, 1.0, 1.0, 1.0)
        bsdf.inputs["Transmission Weight"].default_value = 1.0
        bsdf.inputs["IOR"].default_value = 1.376
        bsdf.inputs["Roughness"].default_value = 0.0
        material.surface_render_method = "BLENDED"
    elif part == "iris":
        _iris(tree, bsdf, iris_srgb, sclera_srgb, iris_scale)
    elif part == "lashes":
        _lashes(tree, bsdf)
        material.surface_render_method = "BLENDED"
    else:
        bsdf.inputs["Base Color"].default_value = srgb_to_linear(PART_SRGB[part])
        bsdf.inputs["Roughness"].default_value = 0.35 if part == "teeth" else 0.5
        bsdf.inputs["Subsurface Weight"].default_value = 0.2
        bsdf.inputs["Subsurface Radius"].default_value = (0.002, 0.001, 0.0008)
    return material


def _uv_polar(tree: bpy.types.NodeTree) -> bpy.types.Node:
    """Node whose Value output is the UV distance from (0.5, 0.5)."""
    uv = tree.nodes.new("ShaderNodeUVMap")
    uv.uv_map = UV_MAP
    dist = tree.nodes.new("ShaderNodeVectorMath")
    dist.operation = "DISTANCE"
    dist.inputs[1].default_value = (0.5, 0.5, 0.0)
    tree.links.new(uv.outputs["UV"], dist.inputs[0])
    return dist


def _sclera(tree, bsdf, sclera_srgb) -> None:
    ramp = tree.nodes.new("ShaderNodeValToRGB")
    ramp.name = ramp.label = SCLERA_NODE
    ramp.color_ramp.elements[0].position = 0.3
    ramp.color_ramp.elements[0].color = srgb_to_linear(sclera_srgb)
    ramp.color_ramp.elements[1].position = 0.6
    ramp.color_ramp.elements[1].color = srgb_to_linear([c * f for c, f in zip(sclera_srgb, (0.95, 0.78, 0.75))])
    tree.links.new(_uv_polar(tree).outputs["Value"], ramp.inputs["Fac"])
    tree.links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.2
    bsdf.inputs["Subsurface Weight"].default_value = 0.1


def _iris(tree, bsdf, iris_srgb, sclera_srgb, iris_scale: float) -> None:
    """Pupil, iris (with streaks and a limbal ring) and white, by UV radius / iris scale."""
    radius = _uv_polar(tree)
    scale = tree.nodes.new("ShaderNodeMath")
    scale.name = scale.label = IRIS_SCALE_NODE
    scale.operation = "DIVIDE"
    scale.inputs[1].default_value = iris_scale
    tree.links.new(radius.outputs["Value"], scale.inputs[0])
    ramp = tree.nodes.new("ShaderNodeValToRGB")
    ramp.name = ramp.label = IRIS_COLOR_NODE
    iris = srgb_to_linear(iris_srgb)
    elements = ramp.color_ramp.elements
    elements[0].position, elements[0].color = PUPIL_UV_RADIUS, (0.005, 0.005, 0.005, 1.0)
    elements[1].position, elements[1].color = PUPIL_UV_RADIUS + 0.02, tuple(c * 0.7 for c in iris[:3]) + (1.0,)
    for position, colour in ((0.3, iris), (LIMBUS_UV_RADIUS - 0.04, tuple(c * 0.6 for c in iris[:3]) + (1.0,)),
                             (LIMBUS_UV_RADIUS, (0.02, 0.015, 0.012, 1.0)),
                             (LIMBUS_UV_RADIUS + 0.03, srgb_to_linear(sclera_srgb))):
        element = elements.new(position)
        element.color = colour
    tree.links.new(scale.outputs["Value"], ramp.inputs["Fac"])
    # Radial streaks: a wave along the angle around the pupil darkens the iris by up to 25 %.
    uv = tree.nodes.new("ShaderNodeUVMap")
    uv.uv_map = UV_MAP
    wave = tree.nodes.new("ShaderNodeTexNoise")
    wave.inputs["Scale"].default_value = 40.0
    wave.inputs["Detail"].default_value = 4.0
    tree.links.new(uv.outputs["UV"], wave.inputs["Vector"])
    streak = tree.nodes.new("ShaderNodeMix")
    streak.data_type = "RGBA"
    streak.blend_type = "MULTIPLY"
    streak.inputs[0].default_value = 0.25
    tree.links.new(ramp.outputs["Color"], streak.inputs[6])
    tree.links.new(wave.outputs["Fac"], streak.inputs[7])
    tree.links.new(streak.outputs[2], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.4


def _lashes(tree, bsdf) -> None:
    """Alpha-masked strands: U makes strands, the position in the band tapers them."""
    uv = tree.nodes.new("ShaderNodeUVMap")
    uv.uv_map = UV_MAP
    sep = tree.nodes.new("ShaderNodeSeparateXYZ")
    tree.links.new(uv.outputs["UV"], sep.inputs[0])

    def math(op, a, b=None):
        node = tree.nodes.new("ShaderNodeMath")
        node.operation = op
        for i, value in enumerate((a, b)):
            if value is None:
                continue
            if isinstance(value, (int, float)):
                node.inputs[i].default_value = value
            else:
                tree.links.new(value, node.inputs[i])
        return node.outputs["Value"]

    u, v = sep.outputs["X"], sep.outputs["Y"]
    upper = math("GREATER_THAN", v, 0.5)
    # Upper strips hold denser lashes; each band's strands are shifted so layers do not align.
    density = math("ADD", math("MULTIPLY", upper, UPPER_LASH_STRANDS - LOWER_LASH_STRANDS),
                   LOWER_LASH_STRANDS)
    phase = math("MULTIPLY", math("FLOOR", math("MULTIPLY", v, 6.0)), 1.7)
    wave = math("SINE", math("ADD", math("MULTIPLY", math("MULTIPLY", u, density), 6.2832), phase))
    band = math("FRACT", math("MULTIPLY", v, 6.0))          # ~0.1 at the tip .. ~0.9 at the root
    # A strand is where the wave exceeds 1 - width, the width shrinking from root to tip;
    # lower lashes are shorter (only the root half of their band).
    strand = math("GREATER_THAN", wave, math("SUBTRACT", 1.0, math("MULTIPLY", band, 0.25)))
    long_enough = math("MAXIMUM", upper, math("GREATER_THAN", band, 0.55))
    alpha = math("MULTIPLY", strand, long_enough)
    bsdf.inputs["Base Color"].default_value = srgb_to_linear(PART_SRGB["lashes"])
    bsdf.inputs["Roughness"].default_value = 0.45
    tree.links.new(alpha, bsdf.inputs["Alpha"])
