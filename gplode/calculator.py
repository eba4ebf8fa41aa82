"""The public entry point: :class:`LodeCalculator` (docs/conventions.md)."""

from __future__ import annotations

import numpy as np

from .basis import make_basis
from .devices import CpuDevice, CudaDevice, Device, gpu_available
from .features import Features, Gradient, VectorJacobianProduct
from .hypers import LodeHypers
from .methods.pipeline import GRADIENTS, Pipeline
from .potentials import SmearedPowerLaw
from .systems import as_systems, atom_owners

__all__ = ["LodeCalculator"]


def _device(backend: str, device: Device | None) -> Device:
    """The device of ``backend`` (``"auto"``: the GPU when usable), or the one given."""
    if device is not None:
        if not isinstance(device, Device):
            raise TypeError(f"device must be a gplode.devices.Device, got {type(device).__name__}")
        if backend == "reference" and not isinstance(device, CpuDevice):
            raise ValueError("backend='reference' runs on the CPU: device must be a CpuDevice")
        if backend in ("numpy", "gpu") and device.name != backend:
            raise ValueError(f"backend={backend!r} does not run on a {type(device).__name__}")
        return device
    if backend == "gpu" or (backend == "auto" and gpu_available()):
        return CudaDevice()
    return CpuDevice()


class LodeCalculator:
    r"""Generalised LODE features: projections of the smeared 1/r^p potential of each
    neighbour species onto radial functions × real spherical harmonics around each atom.

    All keyword arguments are validated here, when the calculator is built, and stored in
    :attr:`hypers` (a :class:`gplode.hypers.LodeHypers`, see there for ranges).

    :param exponent: p ≥ 0 (1: Coulomb-like, 6: dispersion-like, 0: Gaussian density)
    :param smearing: σ in Å
    :param cutoff: radius r₀ of the radial basis in Å
    :param max_radial: largest radial index n (inclusive)
    :param max_angular: largest angular index l (inclusive)
    :param radial_basis: ``"gto"`` or ``"monomial"``
    :param center_atom_weight: weight w_c of each atom's own density in its features
    :param backend: ``"auto"``, ``"reference"``, ``"numpy"`` or ``"gpu"``
    :param accuracy: target relative RMS error of the coefficients
    :param dtype: ``"float64"`` or ``"float32"``
    :param k_cutoff: sum exactly 0 < |k| < k_cutoff (Å⁻¹) instead of the sphere from ``accuracy``
    :param neighbor_types: atomic numbers of the neighbour species (default: all present)
    :param mesh_spacing: mesh backends: override the mesh spacing in Å
    :param interpolation_order: mesh backends: override the B-spline order (4, 6, 8, 10)
    :param route: periodic structures: ``"auto"`` (cheaper of the two by the device's cost
        model), ``"direct"`` (direct k-sum) or ``"mesh"`` (particle mesh); slabs and wires
        (pbc on two or one axes) always take the direct k-sum of a box with the kernel
        truncated across the vacuum (strain derivatives of their periodic directions only:
        :meth:`vjp`); free-space structures:
        ``"auto"`` the free-space mesh where cheaper than the pair sum by the cost models (and
        within memory), ``"mesh"`` always the mesh, ``"direct"`` always the pair sum
    :param device: a :class:`gplode.devices.Device` to run on instead of the backend's
        default one, e.g. ``CpuDevice(memory=2**30)`` to bound the memory used, or
        ``CudaDevice(round_shapes=False)``; not a hyper-parameter (results agree to
        round-off or to ``accuracy``)

    >>> import ase.build, gplode
    >>> calc = gplode.LodeCalculator(exponent=1.0, smearing=1.0, cutoff=3.0,
    ...                              max_radial=2, max_angular=1, backend="reference")
    >>> feats = calc.compute(ase.build.bulk("NaCl", "rocksalt", a=5.64))
    >>> feats.values.shape
    (2, 2, 4, 3)
    """

    def __init__(self, *, device: Device | None = None, **kwargs):
        self.hypers = LodeHypers(**kwargs)
        h = self.hypers
        self.potential = SmearedPowerLaw(h.exponent, h.smearing)
        self.basis = make_basis(h.radial_basis, h.cutoff, h.max_radial, h.max_angular)
        self.device = _device(h.backend, device)
        self._pipeline = Pipeline(h, self.potential, self.basis, self.device, exact=h.backend == "reference")

    @property
    def backend(self) -> str:
        """Name of the backend in use (``"auto"`` resolved)."""
        return "reference" if self._pipeline.exact else self.device.name

    @property
    def pipeline(self) -> Pipeline:
        """The methods this calculator runs (:class:`gplode.methods.pipeline.Pipeline`):
        route choice, mesh parameters, splines."""
        return self._pipeline

    def __repr__(self):
        return f"LodeCalculator({', '.join(f'{k}={v!r}' for k, v in self.hypers.to_dict().items())})"

    def check(self, frames) -> None:
        """Raise, without computing anything, what :meth:`compute` would raise for ``frames``:
        invalid structures, and structures beyond the memory or work limits of their route.
        Cheap (no k-sums, no meshes), except that the free-space pair table is built once."""
        systems = as_systems(frames)
        self._pipeline.check(systems, self._species(systems))

    def _species(self, systems) -> np.ndarray:
        """The neighbour species of a call: ``neighbor_types``, else all present."""
        if self.hypers.neighbor_types is None:
            return np.unique(np.concatenate([s.numbers for s in systems]))
        return np.array(self.hypers.neighbor_types, dtype=np.int64)

    def compute(self, frames, gradients=(), on_device: bool = False) -> Features:
        """Compute the features of one ``ase.Atoms`` or a sequence of them.

        With ``neighbor_types`` given, atoms of other species still get features as
        centres, but their density is left out of everyone's features (as featomic's
        neighbour-type selections do).

        :param gradients: dense derivatives to add to ``Features.gradients``
            (:class:`gplode.features.Gradient`): ``"positions"`` (O(N²) memory, refused with a
            ``MemoryError`` beyond the available memory) and/or ``"strain"``. Periodic
            structures take the direct k-sum's derivatives whatever their route, free-space
            ones the pair sum's, slabs and wires the truncated k-sum's (strain: see
            :meth:`vjp`). For forces and stress of a model, :meth:`vjp` needs no dense
            Jacobian.
        :param on_device: leave ``values`` on the calculator's device (a CuPy array with
            ``backend="gpu"``, no copy to the host; the same NumPy array on the CPU), e.g. to
            hand them to PyTorch through DLPack; not with ``gradients``
        :raises ValueError: for invalid structures (see :func:`gplode.systems.as_systems`) or
            unknown gradients
        """
        wanted = _gradient_names(gradients)
        if on_device and wanted:
            raise ValueError("dense gradients are host arrays: use on_device=False with gradients")
        systems = as_systems(frames)
        species = self._species(systems)  # with neighbor_types, other atoms are centres only
        system, atom = atom_owners(systems)
        values = self._pipeline.compute(systems, species, on_device)
        dense = self._pipeline.gradients(systems, species, values, wanted) if wanted else {}
        found = {}
        if "positions" in dense:
            rows, jacobian = dense["positions"]
            found["positions"] = Gradient(jacobian, rows.samples, ("sample", "system", "atom", "neighbor_type"))
        if "strain" in dense:
            found["strain"] = Gradient(dense["strain"], np.arange(values.shape[0]).reshape(-1, 1), ("sample",))
        return Features(
            values=values,
            neighbor_types=species,
            center_types=np.concatenate([s.numbers for s in systems]),
            system=system,
            atom=atom,
            hypers=self.hypers,
            backend=self.backend,
            gradients=found,
        )

    def vjp(self, frames, weights) -> VectorJacobianProduct:
        r"""Vector–Jacobian product: the derivatives of :math:`\mathcal L = \sum\lambda\cdot c` with
        respect to every atom's position and every structure's strain, for ``weights`` λ with
        the shape of ``compute(frames).values``, without any dense Jacobian: O(N N_k) on the
        direct route, O(N log N) on the mesh, the O(N²) pair loop or the mesh in free space.
        The forces of a model linear in the features, E = Σ_i w_{a_i}·c^{(i)}, are
        ``-vjp(frames, w).positions``.
        ``weights`` may be an array of the calculator's device (e.g. CuPy with ``backend="gpu"``):
        they are then not copied to the host (except for free-space structures); the result is
        on the host.

        Slabs and wires (pbc on two or one axes): forces as for any structure; the strain only
        along their periodic directions, :math:`P(\partial\mathcal L/\partial\varepsilon)P` with
        P the projector onto the slab's plane (:math:`1 - \hat n\hat n^T`) or the wire's axis
        (:math:`\hat a\hat a^T`): the in-plane components (xx, xy, yx, yy for a slab in the xy
        plane) or the axial one (zz for a wire along z); the others are zero, not derivatives
        (:class:`gplode.methods.truncated.TruncatedKSum`).

        :raises ValueError: for invalid structures, or weights of another shape or not finite
        """
        systems = as_systems(frames)
        species = self._species(systems)
        shape = (sum(s.n_atoms for s in systems), len(species), (self.hypers.max_angular + 1) ** 2, self.basis.n_radial)
        xp = np if isinstance(weights, (np.ndarray, list, tuple)) else self.device.xp
        weights = xp.asarray(weights, dtype=float)
        if weights.shape != shape:
            raise ValueError(f"weights must have the shape of the features' values {shape}, got {weights.shape}")
        if not bool(xp.isfinite(weights).all()):
            raise ValueError("weights contain NaN or infinite values")
        return VectorJacobianProduct(*self._pipeline.vjp(systems, species, weights))

    def jvp(self, frames, positions=None, strain=None, on_device: bool = False):
        r"""Jacobian–vector product: the change of ``compute(frames).values`` along tangents of
        the positions :math:`\dot r` (``(n_atoms_total, 3)``, rows as ``values``) and of the strain
        :math:`\dot\varepsilon` (``(n_structures, 3, 3)``, r → r(1+ε), H → H(1+ε)); omitted
        tangents are zero. The same cost as :meth:`vjp` and no dense Jacobian: what a force
        loss needs to reach a model's parameters (∂loss/∂λ = J·∂loss/∂F). The strain tangent of
        a slab or a wire must lie in its periodic directions (in-plane, :math:`P\dot\varepsilon P`
        with :math:`P = 1 - \hat n\hat n^T`; axial, :math:`e\,\hat a\hat a^T`; see :meth:`vjp`).

        :raises ValueError: for invalid structures, tangents of another shape or not finite, or
            a slab's or wire's strain tangent with components outside its periodic directions
        """
        systems = as_systems(frames)
        species = self._species(systems)
        n_atoms = sum(s.n_atoms for s in systems)
        tangents = []
        for name, value, shape in (("positions", positions, (n_atoms, 3)), ("strain", strain, (len(systems), 3, 3))):
            value = np.zeros(shape) if value is None else np.asarray(value, dtype=float)
            if value.shape != shape:
                raise ValueError(f"{name} tangent must have shape {shape}, got {value.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name} tangent contains NaN or infinite values")
            tangents.append(value)
        tangents[1] = self._pipeline.check_gradients(systems, tangents[1])  # before computing anything
        values = self._pipeline.compute(systems, species, on_device)
        return self._pipeline.jvp(systems, species, values, *tangents, on_device=on_device)


def _gradient_names(gradients) -> tuple[str, ...]:
    """The validated names of ``compute``'s ``gradients`` argument."""
    names = (gradients,) if isinstance(gradients, str) else tuple(gradients or ())
    unknown = [name for name in names if name not in GRADIENTS]
    if unknown:
        raise ValueError(f"unknown gradients {unknown}: choose from {list(GRADIENTS)}")
    return names
