"""Check and fetch the official HRN release files.

:func:`check` lists every expected file (:data:`.layout.FILES`, GitHub or ModelScope layout)
with its size and whether it loads with our strict loaders. :func:`download` fetches one URL
with progress, HTTP Range resume (a ``.part`` file is kept between attempts) and sha256
verification when a checksum is known; without a network it fails with a message saying where
to put the files by hand. :func:`download_official` fetches the needed files from ModelScope
(and, on request, the official detectors' files).
"""
from __future__ import annotations

import hashlib
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import EngineError, ModelFilesError
from ..progress import ProgressCallback
from . import layout

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileStatus:
    """What :func:`check` found for one expected file."""

    entry: layout.AssetFile
    path: Optional[Path]
    """The file found (either layout), None when absent."""
    size: Optional[int]
    """Bytes on disk, None when absent."""
    loads: Optional[bool]
    """True/False after a strict load; None when absent or when we have no loader for it."""
    message: str
    """"ok", the loader's error, or why nothing was checked."""


def _loaders() -> dict[str, Callable[[Path], object]]:
    from . import align, bbox_regressor, bfm, checkpoint, fan, landmark106, retinaface, s3fd

    return {
        "hrn": checkpoint.load_hrn_networks,
        "deretouch": checkpoint.load_deretouch,
        "bfm": bfm.BFMModel.load,
        "lm3d": align.load_template,
        "tex_mean": lambda p: bfm._load_npy(p, "tex_mean", bfm.ALBEDO_MAP_SIZE ** 2 * 3),
        "tex_basis": lambda p: bfm._load_npy(p, "tex_basis", bfm.ALBEDO_MAP_SIZE ** 2 * 3 * bfm.NUM_TEX),
        "uvs": bfm.load_uvs,
        "template_obj": bfm.load_template_faces,
        # The official detector chain (engine.hrn_official.detectors), loaded as strictly.
        "retinaface": retinaface.load_retinaface,
        "landmark106": landmark106.load_landmark106,
        "bbreg": bbox_regressor.load_bbox_regressor,
        "s3fd": s3fd.load_s3fd,
        "fan": fan.load_fan,
    }


def check(root: str | Path, load: bool = True) -> list[FileStatus]:
    """Status of every expected file under ``root``; ``load=False`` only looks at sizes."""
    loaders = _loaders() if load else {}
    out = []
    for entry in layout.FILES:
        path = layout.find(root, entry.key)
        if path is None:
            out.append(FileStatus(entry, None, None, None, "missing"))
            continue
        loader = loaders.get(entry.key)
        if loader is None:
            out.append(FileStatus(entry, path, path.stat().st_size, None,
                                  "present (not loaded)" if load else "present"))
            continue
        try:
            loader(path)
            out.append(FileStatus(entry, path, path.stat().st_size, True, "ok"))
        except EngineError as err:
            out.append(FileStatus(entry, path, path.stat().st_size, False, str(err)))
    return out


def format_report(root: str | Path, statuses: list[FileStatus]) -> str:
    """Human-readable table of :func:`check` results plus what to do about missing files."""
    lines = [f"HRN official assets in {Path(root).resolve()}:"]
    for st in statuses:
        need = "needed  " if st.entry.needed else "optional"
        size = f"{st.size:>12,d} B" if st.size is not None else " " * 14
        state = {True: "OK     ", False: "BROKEN ", None: "-      "}[st.loads] if st.path else "MISSING"
        where = _shown(st.path, root) if st.path else st.entry.github_path
        lines.append(f"  {state} {need} {size}  {where}")
        if st.loads is False:
            lines.append(f"          {st.message}")
    missing = [st for st in statuses if st.entry.needed and st.loads is not True]
    if missing:
        lines.append(f"{len(missing)} needed file(s) missing or broken. Official downloads: Google Drive "
                     f"{layout.GOOGLE_DRIVE_FOLDER} (GitHub layout) or ModelScope model "
                     f"{layout.MODELSCOPE_MODEL_ID}, revision {layout.MODELSCOPE_REVISION} (flat layout); "
                     f"`python -m engine.hrn_official assets download DIR` fetches the ModelScope files.")
    else:
        lines.append("All needed files are present and load.")
    detectors = [st for st in statuses if st.entry.key in layout.DETECTOR_KEYS]
    if all(st.loads is True for st in detectors):
        lines.append("The official detector chain is complete: it aligns faces instead of MediaPipe.")
    else:
        lines.append("The official detector chain is incomplete: faces are aligned with MediaPipe's "
                     "landmarks (`assets download DIR --detectors` fetches the chain's files).")
    return "\n".join(lines)


def _shown(path: Path, root: str | Path) -> str:
    """``path`` relative to ``root`` when inside it (the usual case), else in full (torch hub's
    cache)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def download(url: str, dest: str | Path, sha256: Optional[str] = None,
             progress: Optional[ProgressCallback] = None, timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``dest``, resuming a previous partial download.

    Data goes to ``dest + '.part'``; an existing part is continued with an HTTP Range request
    (a server answering 200 instead of 206 restarts it). When complete, the sha256 is checked
    (if given) and the part renamed to ``dest``.

    Args:
        progress: called as ``progress("Downloading <name>", fraction)``; fraction is 0 until
            the size is known.

    Raises:
        ModelFilesError: no network / server error (the message says where to put the file
            by hand), or a checksum mismatch (the bad download is deleted).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    stage = f"Downloading {dest.name}"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            if have and resp.status != 206:
                have = 0  # the server ignored the Range header: start again
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with open(part, "ab" if have else "wb") as fh:
                done = have
                while chunk := resp.read(_CHUNK):
                    fh.write(chunk)
                    done += len(chunk)
                    if progress is not None and progress(stage, done / total if total else 0.0) is False:
                        from ..errors import Cancelled

                        raise Cancelled(f"Download of {dest.name} cancelled; run again to resume.")
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to fetch: the part is complete
            pass
        else:
            raise ModelFilesError(f"Downloading {url} failed: HTTP {err.code} {err.reason}. "
                                  + _manual_hint(dest)) from err
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ModelFilesError(f"Cannot download {url} ({reason}); no network connection? "
                              + _manual_hint(dest)) from err
    if sha256 is not None:
        digest = _sha256(part)
        if digest != sha256.lower():
            part.unlink()
            raise ModelFilesError(f"Downloaded {dest.name} is corrupt: sha256 {digest}, expected "
                                  f"{sha256}. The partial file was deleted; download it again.")
    os.replace(part, dest)
    return dest


def download_official(root: str | Path, progress: Optional[ProgressCallback] = None,
                      base_url: Optional[str] = None, detectors: bool = False) -> list[Path]:
    """Fetch every needed file that is missing under ``root`` (ModelScope flat layout).

    Args:
        base_url: a format string with ``{path}`` (and optionally ``{model_id}``,
            ``{revision}``) that replaces every download address, e.g. a mirror.
        detectors: also fetch the official detector chain (:data:`.layout.DETECTOR_KEYS`);
            files with a publisher address of their own (S3FD, FAN) come from there, checked
            against their published sha256.
    """
    wanted = [e for e in layout.FILES if e.needed or (detectors and e.key in layout.DETECTOR_KEYS)]
    fetched = []
    for entry in wanted:
        if entry.modelscope_path is None or layout.find(root, entry.key):
            continue
        if entry.url and base_url is None:
            url = entry.url
        else:
            url = (base_url or layout.MODELSCOPE_FILE_URL).format(
                model_id=layout.MODELSCOPE_MODEL_ID, revision=layout.MODELSCOPE_REVISION,
                path=entry.modelscope_path)
        fetched.append(download(url, Path(root) / entry.modelscope_path, entry.sha256, progress))
    return fetched


def _manual_hint(dest: Path) -> str:
    return (f"Download the official HRN files by hand (Google Drive {layout.GOOGLE_DRIVE_FOLDER}, or "
            f"ModelScope model {layout.MODELSCOPE_MODEL_ID} revision {layout.MODELSCOPE_REVISION}) and "
            f"put this one at {dest}; `python -m engine.hrn_official assets check {dest.parent}` "
            f"lists what is expected where.")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
