"""Network architectures by name, described by a small frozen, JSON-serialisable spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from cryoflow.errors import ConfigError

ARCHITECTURES = ("tomoseg", "unet", "unet3d", "conformation_ae", "picker")


@dataclass(frozen=True)
class ModelSpec:
    """Which network to build and its size.

    arch : ``"tomoseg"`` (EMAN2-style three 15x15 convolutions), ``"unet"`` (small 2D U-Net),
        ``"unet3d"`` (residual 3D U-Net of :mod:`cryoflow.models.unet3d`, missing-wedge filling),
        ``"conformation_ae"`` (the 3D missing-wedge-aware autoencoder of ``cryoflow embed``,
        :mod:`cryoflow.models.conformation_ae`) or ``"picker"`` (the 3D particle picker,
        :mod:`cryoflow.models.picknet`).
    channels : hidden channels of the tomoseg net's two feature layers.
    kernel_size : odd tomoseg kernel size (EMAN2: 15).
    base_channels, depth : width of the first level and number of poolings (U-Net and
        autoencoder).
    latent_dim : the autoencoder's latent dimension (2..16).
    box : the autoencoder's working box side (voxels; a multiple of ``2**depth``).
    diameter_px, shells, degree, reach, hidden : the picker's particle diameter (voxels of the
        level it runs at), descriptor shells and spherical-harmonic degree, descriptor reach
        (x diameter) and hidden units (:class:`cryoflow.kernels.invariants.InvariantSpec`).
    """

    arch: str = "tomoseg"
    channels: tuple[int, int] = (16, 16)
    kernel_size: int = 15
    base_channels: int = 8
    depth: int = 2
    latent_dim: int = 4
    box: int = 32
    diameter_px: float = 0.0
    shells: int = 6
    degree: int = 6
    reach: float = 0.8
    hidden: int = 32

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"arch must be one of {list(ARCHITECTURES)}, got {self.arch!r}")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ConfigError(f"channels must be two positive ints, got {list(self.channels)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be a positive odd int, got {self.kernel_size}")
        if self.base_channels < 1 or not 1 <= self.depth <= 5:
            raise ConfigError(
                f"base_channels must be >= 1 and depth in 1..5, got {self.base_channels}, {self.depth}"
            )
        if not 2 <= int(self.latent_dim) <= 16:
            raise ConfigError(f"latent_dim must lie in 2..16, got {self.latent_dim}")
        if self.arch == "conformation_ae" and (
            int(self.box) < 2**self.depth or int(self.box) % 2**self.depth
        ):
            raise ConfigError(
                f"the autoencoder's box must be a positive multiple of 2**depth = "
                f"{2**self.depth}, got {self.box}"
            )
        if self.arch == "picker" and not (self.diameter_px > 0 and self.hidden >= 1):
            raise ConfigError(
                f"a picker needs diameter_px > 0 and hidden >= 1, got {self.diameter_px}, {self.hidden}"
            )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "arch": self.arch,
            "channels": list(self.channels),
            "kernel_size": self.kernel_size,
            "base_channels": self.base_channels,
            "depth": self.depth,
            "latent_dim": self.latent_dim,
            "box": self.box,
        }
        if self.arch == "picker":
            out.update(
                diameter_px=self.diameter_px,
                shells=self.shells,
                degree=self.degree,
                reach=self.reach,
                hidden=self.hidden,
            )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        known = {"arch", "channels", "kernel_size", "base_channels", "depth", "latent_dim", "box"}
        known |= {"diameter_px", "shells", "degree", "reach", "hidden"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"unknown model spec fields {sorted(unknown)}; allowed {sorted(known)}"
            )
        try:
            return cls(
                arch=str(data.get("arch", "tomoseg")),
                channels=tuple(int(c) for c in data.get("channels", (16, 16))),  # type: ignore[arg-type]
                kernel_size=int(data.get("kernel_size", 15)),
                base_channels=int(data.get("base_channels", 8)),
                depth=int(data.get("depth", 2)),
                latent_dim=int(data.get("latent_dim", 4)),
                box=int(data.get("box", 32)),
                diameter_px=float(data.get("diameter_px", 0.0)),
                shells=int(data.get("shells", 6)),
                degree=int(data.get("degree", 6)),
                reach=float(data.get("reach", 0.8)),
                hidden=int(data.get("hidden", 32)),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"malformed model spec {data!r}: {exc}") from exc


def build_model(spec: ModelSpec) -> nn.Module:
    """A freshly initialised network for ``spec``.

    The 2D segmentation networks map ``(B, 1, H, W)`` images to ``(B, 1, H, W)`` logits;
    ``"unet3d"`` maps ``(B, 1, Z, Y, X)`` volumes to volumes; the conformation autoencoder maps
    ``(n, 1, b, b, b)`` volumes to ``(n, latent_dim)`` and back.
    """
    if spec.arch == "picker":
        from cryoflow.models.picknet import PickNet

        return PickNet(spec)
    if spec.arch == "unet3d":
        from cryoflow.models.unet3d import UNet3D

        return UNet3D(base_channels=spec.base_channels, depth=spec.depth)
    if spec.arch == "conformation_ae":
        from cryoflow.models.conformation_ae import ConformationAE

        return ConformationAE(
            box=spec.box,
            latent_dim=spec.latent_dim,
            base_channels=spec.base_channels,
            depth=spec.depth,
        )
    if spec.arch == "tomoseg":
        from cryoflow.models.tomoseg import TomosegNet

        return TomosegNet(channels=spec.channels, kernel_size=spec.kernel_size)
    from cryoflow.models.unet import UNet2D

    return UNet2D(base_channels=spec.base_channels, depth=spec.depth)
