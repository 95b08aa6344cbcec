"""Strict loading of the official ``.pth`` files.

The official loader uses ``strict=False`` for the three HRN networks, so a renamed key would
silently leave random weights in place. Here every key must match: a missing or unexpected
key, or a tensor of the wrong shape, is a :class:`~engine.errors.ModelFilesError` that names
the key(s) and the file. Files are read with ``map_location='cpu'`` (the release was saved
from GPU training) and ``weights_only=True`` (no arbitrary pickled code runs).

Accepted top-level structure of ``epoch_10.pth`` (FACTS 2.8, OFFICIAL-LAYOUT): a dict with
``net_recon``, ``mid_net``, ``high_net`` (state dicts), ``alpha``, ``beta`` (float32 ``[1]``).
The training routine also saves ``opt_00`` (Adam state) and ``sched_00`` (LR scheduler state);
they are accepted when present and ignored, since inference never needs them. Any other
top-level key is an error.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from ..errors import ModelFilesError
from . import layout

#: Top-level entries of the HRN checkpoint that inference reads.
HRN_REQUIRED = ("net_recon", "mid_net", "high_net", "alpha", "beta")
#: Training-state entries that may be present and are ignored.
HRN_IGNORED = ("opt_00", "sched_00")

# How many key names an error message lists before summarising.
_MAX_LISTED = 8


def read_pth(path: str | Path, key: Optional[str] = None) -> Any:
    """Read a torch file safely onto the CPU.

    Args:
        path: the ``.pth`` file.
        key: the :data:`engine.hrn_official.layout.FILES` key, for the "where to get it" hint.

    Raises:
        ModelFilesError: missing, truncated or corrupt file, or one that needs code execution
            to unpickle (not a plain weights file).
    """
    path = Path(path)
    hint = (" " + layout.where_to_get(key)) if key else ""
    if not path.is_file():
        raise ModelFilesError(f"Model file not found: {path}.{hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelFilesError(
            f"{path} is not a plain weights file or is corrupt ({err.__class__.__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}).{hint}") from err
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as err:
        size = path.stat().st_size
        raise ModelFilesError(
            f"{path} ({size} bytes) is truncated or corrupt and cannot be read "
            f"({str(err).splitlines()[0] if str(err) else err.__class__.__name__}). "
            f"Download it again.{hint}") from err


def load_strict(module: nn.Module, state: Mapping[str, Any], source: str) -> None:
    """Copy ``state`` into ``module``, requiring exactly its keys and shapes.

    Args:
        module: the network whose ``state_dict()`` keys define what must be present.
        state: the state dict read from the file.
        source: names the file (and entry) in messages, e.g. ``"epoch_10.pth [mid_net]"``.

    Raises:
        ModelFilesError: missing keys, unexpected keys, a non-tensor value or a shape
            mismatch; the message lists the offending keys with expected/found shapes.
    """
    if not isinstance(state, Mapping):
        raise ModelFilesError(f"{source}: expected a state dict, found {type(state).__name__}.")
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing key(s) {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s) {_listing(unexpected)}")
    wrong = []
    for k, ref in expected.items():
        value = state.get(k)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            wrong.append(f"'{k}' is a {type(value).__name__}, not a tensor")
        elif tuple(value.shape) != tuple(ref.shape):
            wrong.append(f"'{k}' expected shape {tuple(ref.shape)}, found {tuple(value.shape)}")
    if wrong:
        problems.append("wrong tensor(s): " + "; ".join(wrong[:_MAX_LISTED])
                        + (f"; and {len(wrong) - _MAX_LISTED} more" if len(wrong) > _MAX_LISTED else ""))
    if problems:
        raise ModelFilesError(
            f"{source} does not match the official network layout: " + "; ".join(problems)
            + ". The file is not an unmodified official HRN release file.")
    # assign=True: the file's tensors become the parameters, so modules built on the "meta"
    # device (:func:`build_empty`) need no random initialisation first.
    module.load_state_dict(dict(state), strict=True, assign=True)


def build_empty(factory: Callable[[], nn.Module]) -> nn.Module:
    """``factory()`` built on the meta device: right structure, no memory, no random init;
    fill it with :func:`load_strict`."""
    with torch.device("meta"):
        return factory()


def split_hrn_checkpoint(content: Any, path: str | Path) -> dict[str, Any]:
    """Check the top level of ``epoch_10.pth`` and return its required entries.

    Returns:
        ``{"net_recon": state, "mid_net": state, "high_net": state, "alpha": float,
        "beta": float}``.

    Raises:
        ModelFilesError: not a dict, required entries missing, unknown entries, or
            ``alpha``/``beta`` not one-element tensors.
    """
    name = Path(path).name
    if not isinstance(content, Mapping):
        raise ModelFilesError(f"{path}: expected a dict of networks, found {type(content).__name__}.")
    missing = [k for k in HRN_REQUIRED if k not in content]
    unknown = [k for k in content if k not in HRN_REQUIRED + HRN_IGNORED]
    if missing or unknown:
        parts = ([f"missing entr{'y' if len(missing) == 1 else 'ies'} {_listing(missing)}"] if missing else []) \
            + ([f"unexpected entr{'y' if len(unknown) == 1 else 'ies'} {_listing(unknown)}"] if unknown else [])
        raise ModelFilesError(f"{path} is not the official HRN checkpoint: " + "; ".join(parts)
                              + ". " + layout.where_to_get("hrn"))
    out: dict[str, Any] = {k: content[k] for k in ("net_recon", "mid_net", "high_net")}
    for k in ("alpha", "beta"):
        value = content[k]
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ModelFilesError(f"{name} [{k}]: expected a float tensor of shape (1,), found {found}.")
        out[k] = float(value.reshape(()).item())
    return out


def _listing(keys: list[str]) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:_MAX_LISTED])
    return shown + (f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else "")


class HRNNetworks:
    """The three HRN networks and their output scales, loaded strictly, in eval mode."""

    def __init__(self, recon: nn.Module, mid: nn.Module, high: nn.Module, alpha: float, beta: float):
        self.recon, self.mid, self.high = recon, mid, high
        #: Learned scale of the deformation output (mid_net), FACTS 1.17.
        self.alpha = alpha
        #: Learned scale of the displacement output (high_net), FACTS 1.18.
        self.beta = beta

    def to(self, device: str | torch.device) -> "HRNNetworks":
        for net in (self.recon, self.mid, self.high):
            net.to(device)
        return self


def hrn_networks_from(content: Any, path: str | Path) -> HRNNetworks:
    """Build the networks from the already-read content of ``epoch_10.pth`` (strict)."""
    from . import net_recon, pix2pix

    parts = split_hrn_checkpoint(content, path)
    name = Path(path).name
    nets = {"net_recon": build_empty(net_recon.ReconNet), "mid_net": build_empty(pix2pix.mid_net),
            "high_net": build_empty(pix2pix.high_net)}
    for key, net in nets.items():
        load_strict(net, parts[key], f"{name} [{key}]")
        net.eval()
    return HRNNetworks(nets["net_recon"], nets["mid_net"], nets["high_net"], parts["alpha"], parts["beta"])


def load_hrn_networks(path: str | Path) -> HRNNetworks:
    """Read ``epoch_10.pth`` (or ModelScope's ``pytorch_model.pt``) strictly, on the CPU."""
    return hrn_networks_from(read_pth(path, "hrn"), path)


def load_deretouch(path: str | Path) -> nn.Module:
    """Read ``de-retouching.pth`` strictly: the UNet under key ``generator``, eval mode."""
    from .deretouch import DeRetouchUNet

    content = read_pth(path, "deretouch")
    if not isinstance(content, Mapping) or "generator" not in content:
        found = list(content)[:_MAX_LISTED] if isinstance(content, Mapping) else type(content).__name__
        raise ModelFilesError(f"{path}: expected a dict with key 'generator', found {found}. "
                              + layout.where_to_get("deretouch"))
    net = build_empty(DeRetouchUNet)
    load_strict(net, content["generator"], f"{Path(path).name} [generator]")
    return net.eval()
