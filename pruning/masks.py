"""Learnable node gates: one tau per node, a Heaviside gate forward, a sigmoid slope backward.

A gate is open when tau > 0. The forward pass uses the exact step H(tau), so the
model receives each node either intact or mean-ablated. The backward pass uses the
derivative of sigmoid(tau / heaviside_temp), a straight-through estimator. An
ablated node takes its mean activation: x' = mean + H(tau) * (x - mean).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from inference.circuit import location_width, node_locations


def heaviside_ste(tau: torch.Tensor, temperature: float) -> torch.Tensor:
    """Return H(tau) (1 where tau > 0, else 0) with the gradient of sigmoid(tau / temperature)."""
    soft = torch.sigmoid(tau / temperature)
    hard = (tau > 0).to(tau.dtype)
    return hard + (soft - soft.detach())


class NodeGates(torch.nn.Module):
    """One tau parameter per node of every node location of a model."""

    def __init__(self, config, *, init_bias: float, init_noise: float, generator=None):
        super().__init__()
        self.locations = node_locations(config)
        self.taus = torch.nn.ParameterDict()
        for location in self.locations:
            width = location_width(config, location)
            noise = torch.randn(width, generator=generator) * init_noise
            self.taus[_key(location)] = torch.nn.Parameter(noise + init_bias)

    def tau(self, location: str) -> torch.Tensor:
        return self.taus[_key(location)]

    @torch.no_grad()
    def clamp_(self) -> None:
        for tau in self.taus.values():
            tau.clamp_(-1.0, 1.0)

    def n_open(self) -> int:
        """Return the number of open gates (tau > 0)."""
        return sum(int((tau > 0).sum()) for tau in self.taus.values())

    def scores(self) -> dict[str, torch.Tensor]:
        """Return a detached copy of every location's tau."""
        return {location: self.tau(location).detach().clone() for location in self.locations}

    def gates(self, temperature: float) -> dict[str, torch.Tensor]:
        return {loc: heaviside_ste(self.tau(loc), temperature) for loc in self.locations}


def _key(location: str) -> str:
    # ParameterDict keys cannot contain dots.
    return location.replace(".", "__")


def gated_interventions(gates: Mapping[str, torch.Tensor], means: Mapping[str, torch.Tensor]):
    """Return hook interventions that mix each activation with its mean by its gate.

    A gate may have shape (width,) or (batch, 1, width) for a different gate per
    sequence.
    """

    def make(gate: torch.Tensor, mean: torch.Tensor):
        def intervene(x: torch.Tensor) -> torch.Tensor:
            gate_x = gate.to(device=x.device, dtype=x.dtype)
            mean_x = mean.to(device=x.device, dtype=x.dtype)
            # x * gate + mean * (1 - gate) in one fused op over the large tensor x.
            return torch.addcmul(mean_x * (1 - gate_x), x, gate_x)

        return intervene

    return {location: make(gate, means[location]) for location, gate in gates.items()}
