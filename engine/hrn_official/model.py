"""The official HRN single-view inference wired together (FACTS 1.8-1.18).

224 crop -> ``net_recon`` -> 257 coefficients -> BFM shape (canonical) and pose ->
position map P = world2uv(canonical shape) and texture T = unwrap(512 crop, posed base mesh)
-> 3DMM albedo A0 and de-retouched albedo A' -> ``mid_net``(P, 2T-1 at 64^2) x 0.1 alpha x
valid mask = deformation D (canonical frame, dm) -> mid mesh S + D(uv) -> re-aligned texture
T' -> ``high_net``(P, T', D at 256^2) x 0.1 beta x valid mask = displacement d (dm).

Not done here: the detail normals and colour refinement (visualisation only). Photo ->
crops, the face-region mask and the conversion to :class:`engine.result.FaceReconstruction`
are in :mod:`.reconstruct`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..uv.raster import UVRaster, rasterize_uv
from . import align, bfm, checkpoint, layout, pix2pix, uv
from .deretouch import apply_blend, blend_layer
from .detectors import OfficialDetectors, available
from .net_recon import Coefficients

UV_SIZE = 256
MID_SIZE = 64


@dataclass(frozen=True)
class OfficialOutputs:
    """Outputs of one image, official units (decimetres, official world frame), batch 1."""

    coeffs: torch.Tensor
    """``[1, 257]`` raw network coefficients."""
    shape: torch.Tensor
    """``[1, N, 3]`` canonical (unposed) base shape."""
    rotation: torch.Tensor
    """``[1, 3, 3]`` R (v' = R v + t)."""
    translation: torch.Tensor
    """``[1, 3]`` t."""
    position_map: torch.Tensor
    """``[1, 3, 256, 256]`` P = world2uv(shape)."""
    texture_map: torch.Tensor
    """``[1, 3, 256, 256]`` T in [0, 1] from the 512 crop and the base mesh."""
    albedo_map: torch.Tensor
    """``[1, 3, 256, 256]`` 3DMM albedo A0 in [0, 1]."""
    retouch_blend: torch.Tensor
    """``[1, 3, 512, 512]`` the de-retouching UNet's blend layer B (resized to any albedo size)."""
    deretouched_albedo: torch.Tensor
    """``[1, 3, 256, 256]`` A'."""
    valid_mask: torch.Tensor
    """``[1, 1, 256, 256]`` occlusion mask multiplied into D and d."""
    deformation_map: torch.Tensor
    """``[1, 3, 64, 64]`` D, canonical-frame offsets."""
    mid_offsets: torch.Tensor
    """``[1, N, 3]`` D sampled at the vertices."""
    displacement_map: torch.Tensor
    """``[1, 1, 256, 256]`` d along the normal."""


#: Where :class:`OfficialHRN` takes the five alignment points from (see :meth:`OfficialHRN.load`).
LANDMARK_SOURCES = ("auto", "official", "mediapipe")


class OfficialHRN:
    """All official networks and assets, on one device. Build with :meth:`load`."""

    def __init__(self, nets: checkpoint.HRNNetworks, deretouch_net: torch.nn.Module, face: bfm.BFMModel,
                 uvs: torch.Tensor, uv_faces: torch.Tensor, albedo_mean: torch.Tensor,
                 albedo_basis: torch.Tensor, raster: UVRaster, landmark_template: np.ndarray,
                 files: dict[str, Path], device: torch.device,
                 detectors: Optional[OfficialDetectors] = None):
        self.nets, self.deretouch_net, self.face = nets, deretouch_net, face
        #: The official landmark chain when its files were found and loaded, else None
        #: (MediaPipe gives the alignment points).
        self.detectors = detectors
        #: ``[5, 3]`` float64 3D template of the crop alignment (:func:`.align.load_template`).
        self.landmark_template = landmark_template
        #: The file each asset was read from, by :data:`.layout.FILES` key.
        self.files = files
        self.uvs, self.uv_faces, self.raster = uvs, uv_faces, raster
        self.albedo_mean, self.albedo_basis, self.device = albedo_mean, albedo_basis, device
        self._rasters: dict[int, UVRaster] = {}

    @classmethod
    def load(cls, assets_dir: str | Path, device: str | torch.device = "cpu",
             landmarks: str = "auto") -> "OfficialHRN":
        """Load every needed file from ``assets_dir`` (GitHub or ModelScope layout), strictly.

        Args:
            landmarks: which alignment points to use: "official" (the official detector chain,
                :mod:`.detectors`; its files must be present), "mediapipe", or "auto" (the
                official chain when all its files are present).

        Raises:
            ModelFilesError: a file is missing, truncated or not the official one.
        """
        if landmarks not in LANDMARK_SOURCES:
            raise ValueError(f"landmarks must be one of {LANDMARK_SOURCES}, got {landmarks!r}")
        device = torch.device(device)
        use_official = landmarks == "official" or (landmarks == "auto" and available(assets_dir))
        detectors = OfficialDetectors.load(assets_dir, device) if use_official else None

        files = {e.key: layout.find(assets_dir, e.key) or layout.candidates(assets_dir, e.key)[0]
                 for e in layout.FILES if e.needed}
        need = files.__getitem__
        nets = checkpoint.load_hrn_networks(need("hrn")).to(device)
        deretouch_net = checkpoint.load_deretouch(need("deretouch")).to(device)
        face = bfm.BFMModel.load(need("bfm")).to(device)
        uvs = bfm.load_uvs(need("uvs"))
        uv_faces = bfm.load_template_faces(need("template_obj"))
        mean, basis = bfm.load_albedo_basis(need("tex_mean"), need("tex_basis"))
        template = align.load_template(need("lm3d"))
        raster = rasterize_uv(uvs, uv_faces, (UV_SIZE, UV_SIZE)).to(device)
        return cls(nets, deretouch_net, face, uvs.to(device), uv_faces.to(device), mean.to(device),
                   basis.to(device), raster, template, files, device, detectors)

    def layout_raster(self, size: int) -> UVRaster:
        """UV rasterisation (CPU) of the BFM triangles with their per-vertex UVs at
        ``size x size``, computed once per size (the layout never changes)."""
        if size not in self._rasters:
            self._rasters[size] = rasterize_uv(self.uvs.cpu(), self.face.triangles.cpu(), (size, size))
        return self._rasters[size]

    def to_uv(self, attr: torch.Tensor) -> torch.Tensor:
        """world2uv: ``[B, N, C]`` per-vertex values -> ``[B, C, 256, 256]``."""
        return self.raster.to_uv(attr, self.uv_faces).permute(0, 3, 1, 2)

    @torch.no_grad()
    def run(self, crop224: torch.Tensor, crop512: torch.Tensor,
            face_mask224: Optional[torch.Tensor] = None,
            on_step: Optional[Callable[[float], None]] = None) -> OfficialOutputs:
        """Run the official inference on aligned crops.

        Args:
            crop224: ``[1, 3, 224, 224]`` float32 RGB in [0, 1] (network input).
            crop512: ``[1, 3, 512, 512]`` float32 RGB in [0, 1], same framing (texture source).
            face_mask224: ``[1, 1, 224, 224]`` face-region mask in [0, 1]; None = all ones.
            on_step: called with the fraction done (0..1) after each network; it may raise
                (e.g. :class:`engine.errors.Cancelled`) to stop.
        """
        step = on_step or (lambda fraction: None)
        crop224, crop512 = crop224.to(self.device), crop512.to(self.device)
        coeffs = self.nets.recon(crop224)
        step(0.2)
        c = Coefficients.split(coeffs)
        shape = self.face.shape(c.identity, c.expression)
        rot = bfm.rotation(c.angles)
        posed = bfm.pose(shape, rot, c.translation)
        coverage = self.raster.coverage.to(self.device)

        position = self.to_uv(shape)
        posed_uv = self.to_uv(posed).permute(0, 2, 3, 1)
        texture = uv.unwrap(posed_uv, coverage, crop512).permute(0, 3, 1, 2)
        albedo = bfm.albedo_map(self.albedo_mean, self.albedo_basis, c.texture, UV_SIZE)
        blend = blend_layer(self.deretouch_net, texture * 2 - 1)
        deretouched = apply_blend(albedo, texture * 2 - 1, blend)
        step(0.55)
        mask = face_mask224 if face_mask224 is not None else crop224.new_ones(1, 1, 224, 224)
        valid = smooth_valid_mask(uv.unwrap(posed_uv, coverage, mask.to(self.device)).permute(0, 3, 1, 2))

        down = lambda x, s: F.interpolate(x, (s, s), mode="bilinear", align_corners=False)  # noqa: E731
        mid_in = torch.cat([down(position, MID_SIZE), down(texture * 2 - 1, MID_SIZE)], 1)
        deformation = pix2pix.scaled_output(self.nets.mid(mid_in), self.nets.alpha) * down(valid, MID_SIZE)
        step(0.65)
        offsets = uv.sample_at_vertices(deformation.permute(0, 2, 3, 1), self.uvs)
        mid_posed = bfm.pose(shape + offsets, rot, c.translation)
        texture_mid = uv.unwrap(self.to_uv(mid_posed).permute(0, 2, 3, 1), coverage, crop512).permute(0, 3, 1, 2)
        high_in = torch.cat([position, texture_mid * 2 - 1, down(deformation, UV_SIZE)], 1)
        displacement = pix2pix.scaled_output(self.nets.high(high_in), self.nets.beta) * valid
        step(1.0)
        return OfficialOutputs(coeffs, shape, rot, c.translation, position, texture, albedo, blend,
                               deretouched, valid, deformation, offsets, displacement)


def smooth_valid_mask(mask: torch.Tensor) -> torch.Tensor:
    """Official visualisation smoothing of the ``[B, 1, H, W]`` valid mask (FACTS 1.14):
    3x3 erosion, then an 11x11 box blur (zero padding counted)."""
    eroded = -F.max_pool2d(-mask, 3, stride=1, padding=1)
    return F.avg_pool2d(eroded, 11, stride=1, padding=5, count_include_pad=True)
