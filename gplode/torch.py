r"""PyTorch interface: differentiable LODE features (``pip install "gplode[torch]"``).

:class:`LodeSphericalExpansion` is a ``torch.nn.Module`` whose forward gives the features of
a batch of structures as a tensor, with autograd to the positions and the cells. Its
backward is gplode's vector–Jacobian product (:meth:`gplode.LodeCalculator.vjp`: no dense
Jacobian, no autograd through the mesh), and the backward of that backward with respect
to the incoming gradient is the Jacobian–vector product (:meth:`gplode.LodeCalculator.jvp`),
so force and stress losses train a model's parameters exactly.

Conventions: positions and lattice vectors are rows (Å); the cell gradient is taken at
fixed Cartesian positions, :math:`\partial L/\partial H = H^{-T}(\partial L/\partial\varepsilon -
\sum_j r_j^T\,\partial L/\partial r_j)` per structure (DESIGN.md §2), so a graph in which the
positions are built from fractional coordinates and the cell sees the whole dependence on
the cell. Second derivatives with respect to positions and cells themselves (the Hessian
terms of a force, e.g. d(forces)/d(positions)) are not implemented: their contributions in a
double backward are NaN, never a silent zero; the model parameters'
gradients of a force or stress loss do not need them and are exact.

The core package never imports torch. The inputs of size O(N) (positions, numbers, cells)
are read on the host, where the structures are validated and the k-vectors enumerated. The
arrays the size of the features stay on the calculator's device: on the GPU backend, the
features, the incoming gradients ∂L/∂c and the Jacobian–vector products are exchanged with
CuPy through DLPack (no host round trip) and returned as CUDA tensors; on the CPU they are
NumPy arrays shared with CPU tensors. Tensors on another device than the calculator's are
moved once.
"""

from __future__ import annotations

import ase
import numpy as np
import torch

from .calculator import LodeCalculator

__all__ = ["LodeSphericalExpansion"]


class LodeSphericalExpansion(torch.nn.Module):
    r"""LODE coefficients as a differentiable module; the keyword arguments are those of
    :class:`gplode.LodeCalculator` (``neighbor_types`` fixes the output's species axis; by
    default the species present in each call).

    >>> import torch, gplode.torch
    >>> lode = gplode.torch.LodeSphericalExpansion(exponent=1.0, smearing=1.0, cutoff=3.0, max_radial=2,
    ...                                            max_angular=1, neighbor_types=[11, 17], backend="reference")
    >>> positions = torch.tensor([[0.0, 0.0, 0.0], [2.82, 2.82, 2.82]], dtype=torch.float64, requires_grad=True)
    >>> cell = 5.64 * torch.eye(3, dtype=torch.float64).unsqueeze(0)
    >>> c = lode(positions, torch.tensor([11, 17]), cell, torch.tensor([[True] * 3]), torch.tensor([0, 0]))
    >>> c.shape
    torch.Size([2, 2, 4, 3])
    """

    def __init__(self, *, device=None, **hypers):
        super().__init__()
        self.calculator = LodeCalculator(device=device, **hypers)

    def forward(self, positions, numbers=None, cells=None, pbc=None, structure=None):
        """Features ``(n_atoms, n_neighbor_types, (L+1)**2, n_radial)`` of a batch of structures.

        :param positions: ``(n_atoms, 3)`` tensor, Å, or a list of ``ase.Atoms`` (no gradients)
        :param numbers: ``(n_atoms,)`` atomic numbers
        :param cells: ``(n_structures, 3, 3)`` lattice vectors as rows, Å (any values for free space)
        :param pbc: ``(n_structures, 3)`` booleans (all true: periodic; all false: free space)
        :param structure: ``(n_atoms,)`` index of each atom's structure, non-decreasing
        """
        if isinstance(positions, ase.Atoms) or (
            isinstance(positions, (list, tuple)) and all(isinstance(f, ase.Atoms) for f in positions)
        ):
            frames = [positions] if isinstance(positions, ase.Atoms) else list(positions)
            return _from_backend(self.calculator.compute(frames, on_device=True).values)
        layout = _Layout(positions, numbers, cells, pbc, structure)
        return _Features.apply(positions, cells, self.calculator, layout)


class _Layout:
    """The non-differentiable part of a batch: atomic numbers, pbc, structure of each atom."""

    def __init__(self, positions, numbers, cells, pbc, structure):
        if not isinstance(positions, torch.Tensor) or positions.ndim != 2 or positions.shape[1] != 3:
            raise ValueError("positions must be a (n_atoms, 3) tensor or a list of ase.Atoms")
        n_atoms = positions.shape[0]
        if any(x is None for x in (numbers, cells, pbc, structure)):
            raise ValueError("numbers, cells, pbc and structure are required with a positions tensor")
        if not isinstance(cells, torch.Tensor) or cells.ndim != 3 or cells.shape[1:] != (3, 3):
            raise ValueError("cells must be a (n_structures, 3, 3) tensor")
        self.numbers = _host(numbers).astype(np.int64)
        self.pbc = _host(pbc).astype(bool)
        self.structure = _host(structure).astype(np.int64)
        n_structures = cells.shape[0]
        if self.numbers.shape != (n_atoms,) or self.structure.shape != (n_atoms,):
            raise ValueError(f"numbers and structure must have shape ({n_atoms},)")
        if self.pbc.shape != (n_structures, 3):
            raise ValueError(f"pbc must have shape ({n_structures}, 3)")
        if n_atoms and (np.any(np.diff(self.structure) < 0) or self.structure.min() < 0):
            raise ValueError("structure must be non-decreasing structure indices starting at 0 or more")
        if n_atoms and self.structure.max() >= n_structures:
            raise ValueError(f"structure indices must be < the number of cells ({n_structures})")
        self.counts = np.bincount(self.structure, minlength=n_structures)
        if np.any(self.counts == 0):
            raise ValueError(f"structure(s) {np.flatnonzero(self.counts == 0).tolist()} have no atoms")

    def frames(self, positions: np.ndarray, cells: np.ndarray) -> list:
        """The batch as ``ase.Atoms`` (validated by the calculator)."""
        bounds = np.concatenate([[0], np.cumsum(self.counts)])
        return [
            ase.Atoms(numbers=self.numbers[a:b], positions=positions[a:b], cell=cells[s], pbc=self.pbc[s])
            for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        ]


def _host(tensor) -> np.ndarray:
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def _like(array: np.ndarray, reference: torch.Tensor) -> torch.Tensor:
    """A host array as a tensor with the device and dtype of ``reference``."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device=reference.device, dtype=reference.dtype)


def _from_backend(array, reference: torch.Tensor | None = None) -> torch.Tensor:
    """An array of the calculator's device (NumPy or CuPy) as a tensor, through DLPack (no
    copy), then moved to the device and dtype of ``reference`` if given (a no-op when they match)."""
    tensor = torch.from_dlpack(array)
    return tensor if reference is None else tensor.to(device=reference.device, dtype=reference.dtype)


def _to_backend(tensor: torch.Tensor, device):
    """A tensor as an array of the calculator's ``device`` (a NumPy array for the CPU, CuPy's
    for the GPU), through DLPack: no copy when the tensor is already there."""
    xp = device.xp
    tensor = tensor.detach()
    if xp is np:
        return tensor.cpu().numpy()
    in_cuda_memory = not issubclass(xp.ndarray, np.ndarray)  # CuPy's arrays (a test stand-in's: host memory)
    if in_cuda_memory and tensor.device.type != "cuda":
        tensor = tensor.to(torch.device("cuda", xp.cuda.Device().id))
    return xp.from_dlpack(tensor.contiguous())


class _Features(torch.autograd.Function):
    """c(r, H); backward: the VJP (:class:`_VectorJacobian`)."""

    @staticmethod
    def forward(ctx, positions, cells, calculator, layout):
        frames = layout.frames(_host(positions).astype(float), _host(cells).astype(float))
        ctx.calculator, ctx.layout, ctx.frames = calculator, layout, frames
        ctx.save_for_backward(positions, cells)
        return _from_backend(calculator.compute(frames, on_device=True).values, positions)

    @staticmethod
    def backward(ctx, grad):
        positions, cells = ctx.saved_tensors
        grad_positions, grad_cells = _VectorJacobian.apply(
            grad, positions, cells, ctx.calculator, ctx.layout, ctx.frames
        )
        return grad_positions, grad_cells, None, None


class _VectorJacobian(torch.autograd.Function):
    """(∂L/∂r, ∂L/∂H) from λ = ∂L/∂c; linear in λ, so its own backward with respect to λ is
    the JVP along the incoming (ṙ, Ḣ)."""

    @staticmethod
    def forward(ctx, grad, positions, cells, calculator, layout, frames):
        ctx.calculator, ctx.layout, ctx.frames = calculator, layout, frames
        ctx.save_for_backward(positions, cells)
        ctx.grad_like = torch.empty(0, dtype=grad.dtype, device=grad.device)
        result = calculator.vjp(frames, _to_backend(grad, calculator.device))
        r, h = _host(positions).astype(float), _host(cells).astype(float)
        dr = result.positions.astype(float)
        moment = np.zeros((len(frames), 3, 3))  # Σ_j r_j^T ∂L/∂r_j per structure
        np.add.at(moment, layout.structure, r[:, :, None] * dr[:, None, :])
        dh = np.zeros_like(h)
        periodic = layout.pbc.all(axis=1)
        dh[periodic] = np.linalg.solve(
            h[periodic].transpose(0, 2, 1), result.strain[periodic].astype(float) - moment[periodic]
        )
        return _like(dr, positions), _like(dh, cells)

    @staticmethod
    def backward(ctx, grad_positions, grad_cells):
        positions, cells = ctx.saved_tensors
        h = _host(cells).astype(float)
        rate_r = np.zeros(tuple(positions.shape)) if grad_positions is None else _host(grad_positions).astype(float)
        rate_h = np.zeros(h.shape) if grad_cells is None else _host(grad_cells).astype(float)
        periodic = ctx.layout.pbc.all(axis=1)
        # a cell change Ḣ at fixed positions: strain ε̇ = H⁻¹Ḣ with the positions moved back by r ε̇
        strain = np.zeros(h.shape)
        strain[periodic] = np.linalg.solve(h[periodic], rate_h[periodic])
        r = _host(positions).astype(float)
        rate_r = rate_r - np.einsum("ja,jab->jb", r, strain[ctx.layout.structure])
        tangent = ctx.calculator.jvp(ctx.frames, rate_r, strain, on_device=True)
        # the positions' and cells' own second derivatives (Hessian terms) are not implemented:
        # NaN, so that a gradient that needs them can never be silently incomplete
        second = [
            torch.full_like(tensor, float("nan")) if ctx.needs_input_grad[index + 1] else None
            for index, tensor in enumerate((positions, cells))
        ]
        return _from_backend(tangent, ctx.grad_like), *second, None, None, None
