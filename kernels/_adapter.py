"""Hand NumPy or CuPy arrays to Triton kernels.

Triton treats any argument with a ``data_ptr()`` method as a pointer and reads its element
type from ``dtype`` (by name). On a GPU that is all it needs; its CPU interpreter
(``TRITON_INTERPRET=1``) additionally copies the buffer through torch-like methods
(``untyped_storage``, ``new_empty``, ``set_``, ``size``, ``stride``, ``storage_offset``),
which :class:`TritonArray` provides for NumPy arrays so that the kernels run on the CPU
without torch. Complex arrays must be passed as float views (Triton has no complex type).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TritonArray", "as_triton"]


class _HostStorage:
    """The ``untyped_storage()`` of a NumPy array, as the interpreter uses it.

    The array already lives on the host, so ``cpu()`` returns the same memory: the
    interpreted kernel then works in place and the copy back is a no-op.
    """

    def __init__(self, array: np.ndarray):
        self.array = array

    def data_ptr(self) -> int:
        return self.array.ctypes.data

    def cpu(self):
        return self

    def copy_(self, other):
        if other.data_ptr() != self.data_ptr():
            np.copyto(self.array, other.array)
        return self


class TritonArray:
    """A contiguous NumPy or CuPy array seen by Triton as a pointer argument.

    Keeps a reference to the array so that its memory outlives the launch.
    """

    def __init__(self, array):
        if array.dtype.kind == "c":
            raise TypeError("Triton has no complex type: pass array.view(float)")
        self.array = array
        self.dtype = array.dtype  # Triton maps the dtype by its name ("float64", "int64", …)

    def data_ptr(self) -> int:
        array = self.array
        if isinstance(array, np.ndarray):
            return array.ctypes.data
        return array.data.ptr  # CuPy

    # --- the methods the CPU interpreter calls (NumPy arrays only) -------------------
    def untyped_storage(self):
        return _HostStorage(self.array)

    def size(self, dim: int | None = None):
        return self.array.shape if dim is None else self.array.shape[dim]

    def stride(self, dim: int | None = None):
        strides = tuple(s // self.array.itemsize for s in self.array.strides)
        return strides if dim is None else strides[dim]

    def storage_offset(self) -> int:
        return 0

    def numel(self) -> int:
        return self.array.size

    def element_size(self) -> int:
        return self.array.itemsize

    @property
    def device(self) -> str:
        return "cpu"

    def new_empty(self, shape, dtype=None, device=None):
        return TritonArray(np.empty(shape, dtype=self.array.dtype if dtype is None else dtype))

    def set_(self, storage, offset=0, size=None, stride=None):
        """Point at ``storage`` (the interpreter's host copy, here the same memory)."""
        self.array = storage.array
        return self


def as_triton(array) -> TritonArray:
    """Wrap a C-contiguous NumPy/CuPy array (complex arrays viewed as pairs of floats)."""
    if not array.flags.c_contiguous:
        raise ValueError("Triton kernels need C-contiguous arrays")
    if array.dtype.kind == "c":
        array = array.view(array.real.dtype)
    return TritonArray(array)
