"""The CPU device: NumPy arrays, ``scipy.fft`` on all cores, sparse-matrix interpolation."""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import fft, sparse
from threadpoolctl import ThreadpoolController

from .base import Costs, Device

__all__ = ["CpuDevice", "host_memory"]

#: :meth:`CpuDevice.interpolate` gives a thread a block of at least this many atoms (a thread
#: costs ~0.1 ms)
_ROWS_PER_THREAD = 256


def host_memory() -> int:
    """Bytes of memory available to this process (``MemAvailable``, else physical memory)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class CpuDevice(Device):
    """NumPy + ``scipy.fft`` (all cores); see :class:`gplode.devices.base.Device` for the
    parameters. Batches are capped at 128 MiB: on a CPU larger ones gain nothing and their
    work buffers stay allocated (400 cells of 8–64 atoms at accuracy 1e-6: 512 → 128 MiB took
    the peak memory from 0.63 to 0.32 GiB and the CPU time from 4.2 to 3.3 s; 64 MiB: 0.22 GiB,
    3.6 s)."""

    name = "numpy"
    #: fitted to each method alone (``benchmarks/calibrate_costs.py``, ``results/costs.json``:
    #: rattled NaCl supercells of 216–1,728 atoms, σ = 1 Å, 36–392 channels, accuracy 1e-3
    #: and 1e-6, 2-core development machine; every prediction within 0.63–1.30× of the
    #: measured time): the direct sum ~0.025 ns per (atom, species, k-vector, channel) plus
    #: ~11 ns per (atom, k-vector) for the phases and element-wise products (18 ns with values
    #: in float64; both precisions' phases from the tables); the mesh ~10 ns per (channel, mesh
    #: point) plus ~0.26 ns per (channel, atom, stencil point) (0.54 ns before the channel-last
    #: interpolation). So NaCl (150 channels) takes the direct sum up to ~1,000 atoms at p = 1
    #: (1,728 atoms at 1e-3 on the mesh: 0.55 s measured against the direct sum's 0.74 s) and
    #: ~1,700 at p = 6 and 1e-3 (0.36 s against the mesh's 0.55 s), the mesh beyond.
    costs = Costs(
        direct_term=2.5e-11,
        direct_phase=10.9e-9,
        direct_species=0.0,
        mesh_point=9.8e-9,
        mesh_stencil=0.26e-9,
        direct_phase_double=18.4e-9,
    )
    default_max_batch_bytes = 2**27
    keep_workspace = True
    #: at most 2¹⁹ (padded atom, k-point) pairs in one direct-sum chunk (complex128 phases: 8 MiB):
    #: fresh pages cost ~3 µs each on the 2-core machine, and a single 512-atom NaCl cell
    #: (accuracy 1e-3) took 0.19–0.24 s in its first call with chunks of 2,048 k-points, 0.10 s
    #: with 1,024 (warm 0.06 s either way); 1,728 atoms at p = 6: 0.77–0.85 → 0.35 s, warm
    #: 0.27 → 0.29–0.30 s (more chunks), peak memory 394 → 208 MiB
    chunk_points = 2**19
    #: two batches at once, 64 MiB each: their NumPy array work on both cores (one batch keeps
    #: one core busy between its matrix products). 2 cores: 400 cells of 8–64 atoms 1.16 →
    #: 0.98 s (1e-3), 2.81 → 1.84 s (1e-6); 60 of 64–256 atoms 0.90 → 0.64 s, 2.71 → 1.95 s;
    #: peak memory +0.02–0.04 GiB. (Not measured on more cores.)
    concurrent_batches = 2

    def __init__(self, memory: int | None = None, round_shapes: bool | None = None, max_batch_bytes="default"):
        super().__init__(memory, round_shapes, max_batch_bytes)
        _blas()  # the process's BLAS libraries, found once (~20 ms), with the first CPU device

    def free_memory(self) -> int:
        return host_memory()

    def matmul(self, a, b, out=None):
        """The products of the stack, each a BLAS product of C- or Fortran-contiguous operands
        (others are copied). Inside :meth:`map_batches` (each batch on a core of its own, BLAS
        single-threaded) and for a single matrix this is NumPy's stacked ``matmul``. Else the
        products are spread over the cores, one single-threaded product each: the direct sum's
        matrices are small (e.g. 64 × 412 @ 412 × 90), and multi-threaded BLAS on each of them
        ran at 1–1.5 GFLOP/s on 2 cores (20× below one single-threaded core as soon as another
        process shares the machine). A thread per product costs ~0.1 ms: for the phases'
        (atoms × 3) @ (3 × k) products of 69 cells 4.8 against 0.2 ms stacked."""
        if out is None:
            out = np.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=np.result_type(a, b))
        if a.shape[0] == 1 or getattr(_batch_thread, "active", False):
            return np.matmul(_blas_ready_stack(a), _blas_ready_stack(b), out=out)

        def product(i):
            np.matmul(_blas_ready(a[i]), _blas_ready(b[i]), out=out[i])

        with _blas().limit(limits=1, user_api="blas"):
            for _ in _threads().map(product, range(a.shape[0])):
                pass
        return out

    def map_batches(self, function, batches):
        """:attr:`concurrent_batches` batches at a time on threads of their own, BLAS
        single-threaded meanwhile (each batch keeps its work buffers and one core busy),
        yielded in order. 400 cells of 8–64 atoms, accuracy 1e-3: 0.91 s with each batch's
        products spread over the cores by :meth:`matmul`, 0.65 s like this."""
        batches = list(batches)
        if len(batches) < 2 or self.concurrent_batches < 2:
            yield from map(function, batches)
            return
        with _blas().limit(limits=1, user_api="blas"):
            yield from _batch_threads(self.concurrent_batches).map(function, batches)

    def take_columns(self, tables, columns, out):
        """One ``take`` along the columns per structure: 8 structures × 54 atoms × 1,007 columns
        of 625, complex128: 2.7–4 ms against 9 ms for one broadcast gather."""
        for table, index, target in zip(tables, columns, out, strict=True):
            np.take(table, index, axis=1, out=target, mode="clip")  # in range; 'raise' buffers ``out``
        return out

    def spread(self, indices, weights, species_index, n_species, shape):
        n_points = int(np.prod(shape))
        keep = species_index < n_species
        flat = (species_index[keep, None] * n_points + indices[keep]).ravel()
        mesh = np.bincount(flat, weights=weights[keep].ravel(), minlength=n_species * n_points)
        return mesh.reshape(n_species, *shape).astype(weights.dtype, copy=False)  # bincount sums in float64

    def prepare_interpolation(self, indices, weights, n_points):
        """A sparse (CSR) matrix of the interpolation, rows sorted by mesh position, the row
        order, and the matrix cut into row blocks of consecutive rows (views of its arrays),
        one per core from :data:`_ROWS_PER_THREAD` rows each: consecutive atoms then read
        neighbouring mesh memory (measured 7x faster than an unsorted gather for 13,824 atoms
        on a 135³ mesh), and each core reads its block's stencils once for all meshes."""
        order = np.argsort(indices[:, 0], kind="stable")
        n_atoms, width = indices.shape
        index_type = np.int32 if n_points <= np.iinfo(np.int32).max and n_atoms * width < 2**31 else np.int64
        columns, data = indices[order].astype(index_type).ravel(), weights[order].ravel()
        pointers = np.arange(0, n_atoms * width + 1, width, dtype=index_type)
        matrix = sparse.csr_matrix((data, columns, pointers), shape=(n_atoms, n_points))
        n_blocks = max(1, min(os.cpu_count() or 1, n_atoms // _ROWS_PER_THREAD))
        bounds = np.linspace(0, n_atoms, n_blocks + 1).astype(int)
        blocks = [
            sparse.csr_matrix(
                (data[a * width : b * width], columns[a * width : b * width], pointers[: b - a + 1]),
                shape=(b - a, n_points),
            )
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        return matrix, order, blocks, bounds

    def rfftn(self, meshes):
        return fft.rfftn(meshes, axes=(1, 2, 3), workers=-1)

    def irfftn(self, spectra, shape):
        return fft.irfftn(spectra, s=shape, axes=(1, 2, 3), workers=-1)

    def channel_spectra(self, n_channels, n_half, dtype):
        """Channel-last storage, seen as ``(n_channels, n_half)``: the inverse FFT then writes
        each mesh point's channels side by side, and :meth:`interpolate` reads the stencils
        once for all of them."""
        return np.zeros((n_half, n_channels), dtype=dtype).T

    def channel_meshes(self, spectra, shape):
        """The inverse FFTs over the first three axes of the channel-last spectra (4,096 atoms,
        64³, 6 channels: 6.2 ms against 7.2 ms channel-first), channel-last meshes seen as
        ``(n_channels, n_points)``."""
        n_channels = spectra.shape[0]
        half = spectra.T.reshape(-1, shape[0], shape[1], shape[2] // 2 + 1, n_channels)
        return fft.irfftn(half, s=shape, axes=(1, 2, 3), workers=-1).reshape(-1, n_channels).T

    def channel_spectra_into(self, batch, selected, prefactor, radial, ylm, l):
        phase = (1.0, 1j, -1.0, -1j)[l % 4]  # i^l
        batch.T[selected] = (phase * prefactor * ylm)[:, None] * radial

    def interpolate(self, meshes, plan):
        """One sparse product of each row block with all meshes, the blocks on threads
        (SciPy releases the GIL there), the meshes channel-last (a copy if they are not):
        4,096 atoms, 64³, P = 8, 6 meshes: 6.9 ms against 10.8 ms for a threaded mat-vec per
        mesh, 12 meshes 8.5 against 15.3 ms (2 cores)."""
        _, order, blocks, bounds = plan
        columns = np.ascontiguousarray(meshes.reshape(meshes.shape[0], -1).T)  # (n_points, n_meshes)
        values = np.empty((order.size, meshes.shape[0]), dtype=np.result_type(meshes, blocks[0]))
        products = _threads().map(lambda block: block @ columns, blocks)
        for a, b, product in zip(bounds[:-1], bounds[1:], products, strict=True):
            values[order[a:b]] = product
        return values.T

    def spread_values(self, values, plan, n_points):
        """The transposed sparse interpolation matrix times each row of ``values`` (threads, as
        :meth:`interpolate`): measured ~4x faster than a ``bincount`` per row."""
        matrix, order = plan[:2]
        transposed = matrix.T  # CSC: its mat-vec scatters without a conversion
        meshes = np.empty((values.shape[0], n_points), dtype=values.dtype)
        for i, mesh in enumerate(_threads().map(lambda row: transposed @ row[order], values)):
            meshes[i] = mesh
        return meshes


@functools.lru_cache(maxsize=1)
def _threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="gplode-cpu")


@functools.cache
def _batch_threads(count: int) -> ThreadPoolExecutor:
    """The threads of :meth:`CpuDevice.map_batches` (long-lived: the direct sum keeps its work
    buffers per thread)."""
    return ThreadPoolExecutor(max_workers=count, thread_name_prefix="gplode-batch", initializer=_mark_batch_thread)


#: ``active`` is set in the threads of :func:`_batch_threads`
_batch_thread = threading.local()


def _mark_batch_thread() -> None:
    _batch_thread.active = True


@functools.lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    """The BLAS libraries of this process (found once: the search takes milliseconds)."""
    return ThreadpoolController()


def _blas_ready_stack(stack: np.ndarray) -> np.ndarray:
    """``stack`` if each of its matrices is C- or Fortran-contiguous, else a contiguous copy."""
    inner = stack.strides[1:]
    item = stack.itemsize
    rows, columns = stack.shape[1:]
    if inner[1] == item and (rows < 2 or inner[0] == columns * item):
        return stack
    if inner[0] == item and (columns < 2 or inner[1] == rows * item):
        return stack
    return np.ascontiguousarray(stack)


def _blas_ready(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` if BLAS can take it as it is (C- or Fortran-contiguous: a transposed
    contiguous matrix is passed with BLAS's transpose flag), else a contiguous copy."""
    return matrix if matrix.flags.c_contiguous or matrix.flags.f_contiguous else np.ascontiguousarray(matrix)
