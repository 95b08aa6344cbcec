"""Where the official HRN release files live: names, paths and download locations.

Two layouts of the same files exist (FACTS 2.9):

* the **GitHub tree** of youngLBW/HRN, filled by hand from a Google Drive folder, with paths
  such as ``assets/pretrained_models/hrn_v1.1/epoch_10.pth``;
* the **ModelScope** model directory (``damo/cv_resnet50_face-reconstruction``, revision
  ``v2.0.0-HRN``), where the HRN weights use ModelScope's standard torch filename, the
  de-retouching weights are renamed and the face-model files sit in one flat ``assets/``.

:func:`find` accepts either layout under one folder, so users can point us at whatever they
downloaded. Nothing here reads the files; :mod:`.assets` checks them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

#: ModelScope model id and revision of the pure-HRN release (earlier revisions add
#: face super-resolution post-processing, author in youngLBW/HRN issue #11).
MODELSCOPE_MODEL_ID = "damo/cv_resnet50_face-reconstruction"
MODELSCOPE_REVISION = "v2.0.0-HRN"
#: Google Drive folder the official README links for the GitHub layout.
GOOGLE_DRIVE_FOLDER = "https://drive.google.com/drive/folders/1qI3-5GKxEDbQBSUCwDWmH15uWU3Ka5LS"
#: Where the face-alignment package downloads its models from.
_FAN_URL = "https://www.adrianbulat.com/downloads/python-fan/"
#: Base URL of a file in a ModelScope model repository (append the path inside the model).
MODELSCOPE_FILE_URL = ("https://www.modelscope.cn/api/v1/models/{model_id}/repo"
                       "?Revision={revision}&FilePath={path}")


@dataclass(frozen=True)
class AssetFile:
    """One file of the official release."""

    key: str
    """Short stable name used in code and messages (e.g. ``"hrn"``, ``"bfm"``)."""
    github_path: str
    """Path relative to the youngLBW/HRN repository root (GitHub/Google Drive layout)."""
    modelscope_path: Optional[str]
    """Path inside the ModelScope model directory, None when ModelScope does not ship it."""
    description: str
    """What the file is, for listings."""
    needed: bool
    """True when :class:`engine.hrn_official.model.OfficialHRN` cannot run without it; the
    others belong to the official detectors, which we replace by default."""
    sha256: Optional[str] = None
    """Known checksum, or None (none has been published for HRN's own files; the downloader
    then only checks size and loadability)."""
    url: Optional[str] = None
    """Direct download address of the file's original publisher, when it has one besides
    ModelScope."""
    torch_hub_names: tuple[str, ...] = ()
    """File names in torch hub's checkpoint cache (``torch.hub.get_dir()/checkpoints``), where
    the ``face-alignment`` package keeps the files it downloaded; searched as well."""


FILES: tuple[AssetFile, ...] = (
    AssetFile("hrn", "assets/pretrained_models/hrn_v1.1/epoch_10.pth", "pytorch_model.pt",
              "HRN checkpoint: net_recon, mid_net, high_net, alpha, beta", True),
    AssetFile("deretouch", "assets/pretrained_models/de-retouching.pth", "de_retouching_model.pth",
              "de-retouching UNet (key 'generator')", True),
    AssetFile("bfm", "assets/3dmm_assets/BFM/BFM_model_front.mat", "assets/BFM_model_front.mat",
              "BFM09 'front' face model, Deep3D-processed", True),
    AssetFile("lm3d", "assets/3dmm_assets/BFM/similarity_Lm3D_all.mat",
              "assets/similarity_Lm3D_all.mat", "68-point 3D template for the crop alignment", True),
    AssetFile("tex_mean", "assets/3dmm_assets/bfm_albedo_map_basis/bfm_tex_mean2.npy",
              "assets/bfm_tex_mean2.npy", "UV albedo mean, 512x512x3", True),
    AssetFile("tex_basis", "assets/3dmm_assets/bfm_albedo_map_basis/bfm_texmap_base2.npy",
              "assets/bfm_texmap_base2.npy", "UV albedo basis, 512x512x3 x 80", True),
    AssetFile("uvs", "assets/3dmm_assets/template_mesh/bfm_uvs2.npy", "assets/bfm_uvs2.npy",
              "per-vertex UVs of the BFM front mesh", True),
    AssetFile("template_obj", "assets/3dmm_assets/template_mesh/template_bfm.obj",
              "assets/template_bfm.obj", "BFM front mesh template (faces used)", True),
    AssetFile("bbreg", "util/BBRegressorParam_r.mat", "assets/BBRegressorParam_r.mat",
              "5-point -> box regressor of the official 68-point crop", False),
    AssetFile("landmark106", "assets/pretrained_models/large_base_net.pth", "large_base_net.pth",
              "official 106-point landmark net", False),
    AssetFile("retinaface", "assets/pretrained_models/retinaface_resnet50_2020-07-20_old_torch.pth",
              "retinaface_resnet50_2020-07-20_old_torch.pth", "official face detector", False),
    AssetFile("segment", "assets/pretrained_models/segment_face.pb", "segment_face.pb",
              "official TensorFlow face segmentation (not used: no TensorFlow)", False),
    # The face-alignment package's files (FACTS 1.5, 2.7): the official chain's 68-point
    # detector. The GitHub route lets the package download them into torch hub's cache; we
    # look there too. Checksums: the file names carry their sha256 prefix (torch hub rule).
    AssetFile("s3fd", "assets/face_alignment/s3fd-619a316812.pth", "face_alignment/s3fd-619a316812.pth",
              "S3FD face detector of the face-alignment package", False,
              sha256="619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
              url=_FAN_URL + "s3fd-619a316812.pth", torch_hub_names=("s3fd-619a316812.pth",)),
    AssetFile("fan", "assets/face_alignment/3DFAN4-4a694010b9.zip", "face_alignment/3DFAN4-4a694010b9.zip",
              "FAN 3D 68-point landmark network (TorchScript) of the face-alignment package", False,
              sha256="4a694010b93140609b64a6ea734afc0ee80a4798394740281b0c5bea0ebef1d9",
              url=_FAN_URL + "3DFAN4-4a694010b9.zip",
              # face-alignment 1.3 under torch 1.6 (the official install) fetches the "_1.6" build.
              torch_hub_names=("3DFAN4-4a694010b9.zip", "3DFAN4_1.6-ec5cf40a1d.zip")),
)

#: Keys of the official detector chain (RetinaFace -> 106 points -> box regressor -> S3FD +
#: FAN); all must be present to use it instead of MediaPipe.
DETECTOR_KEYS = ("retinaface", "landmark106", "bbreg", "s3fd", "fan")

BY_KEY = {f.key: f for f in FILES}


def candidates(root: str | Path, key: str) -> list[Path]:
    """Paths under ``root`` where file ``key`` may be, GitHub layout first."""
    entry = BY_KEY[key]
    root = Path(root)
    paths = [root / entry.github_path]
    if entry.modelscope_path:
        paths.append(root / entry.modelscope_path)
    if entry.torch_hub_names:
        import torch

        paths += [Path(torch.hub.get_dir()) / "checkpoints" / name for name in entry.torch_hub_names]
    return paths


def find(root: str | Path, key: str) -> Optional[Path]:
    """The existing file for ``key`` under ``root`` (either layout), or None."""
    return next((p for p in candidates(root, key) if p.is_file()), None)


def where_to_get(key: str) -> str:
    """One paragraph telling the user where file ``key`` comes from and where it goes."""
    entry = BY_KEY[key]
    ms = (f" or '{entry.modelscope_path}' of ModelScope model {MODELSCOPE_MODEL_ID} "
          f"(revision {MODELSCOPE_REVISION})" if entry.modelscope_path else "")
    source = (f"from {entry.url}" if entry.url
              else f"from the official HRN release (Google Drive folder {GOOGLE_DRIVE_FOLDER})")
    return (f"Get '{Path(entry.github_path).name}' {source}{ms} and put it at '{entry.github_path}'"
            + (f" or '{entry.modelscope_path}'" if entry.modelscope_path else "")
            + " inside your HRN assets folder.")
