"""A stand-in for CuPy that is as strict as CuPy about mixing host and device arrays.

CuPy refuses operations that mix its arrays with NumPy arrays (``cupy_array *
numpy_array`` and ``cupy.add(numpy_array, …)`` raise ``TypeError``), which NumPy-only
tests cannot catch. :data:`xp` is a module-like namespace whose arrays
(:class:`DeviceArray`, NumPy memory underneath, so Triton's interpreter can run the
kernels on them) raise the same ``TypeError`` on such mixing. Python and NumPy scalars are
allowed, as in CuPy; ``xp.asarray`` is the explicit host → device transfer and ``.get()``
the device → host one.
"""

from __future__ import annotations

import types

import numpy as np


class DeviceArray(np.ndarray):
    """A NumPy array playing a CuPy array: no implicit mixing with host arrays."""

    def get(self) -> np.ndarray:
        """Copy to the host (as ``cupy.ndarray.get``)."""
        return np.array(self.view(np.ndarray))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _check(inputs + tuple(kwargs.get("out", ())), ufunc.__name__)
        inputs = tuple(_host_view(a) for a in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(_host_view(a) for a in kwargs["out"])
        return _to_device(getattr(ufunc, method)(*inputs, **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        _check(_flatten(args) + _flatten(tuple(kwargs.values())), func.__name__)
        return _to_device(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getitem__(self, key):
        _check(_flatten((key,)), "indexing")
        return _to_device(np.ndarray.__getitem__(self.view(np.ndarray), _unwrap(key)))

    def __setitem__(self, key, value):
        _check(_flatten((key, value)), "assignment")
        np.ndarray.__setitem__(self.view(np.ndarray), _unwrap(key), _unwrap(value))


def _flatten(items) -> tuple:
    out = []
    for item in items:
        if isinstance(item, (tuple, list)):
            out.extend(_flatten(tuple(item)))
        else:
            out.append(item)
    return tuple(out)


def _check(items, what: str) -> None:
    """CuPy's rule: a host array (0-d arrays aside) next to a device array is an error."""
    host = [a for a in items if type(a) is np.ndarray and a.ndim > 0]
    if host:
        raise TypeError(f"{what}: host (NumPy) array mixed with device arrays, shape {host[0].shape}")


def _host_view(a):
    return a.view(np.ndarray) if isinstance(a, DeviceArray) else a


def _unwrap(value):
    if isinstance(value, DeviceArray):
        return value.view(np.ndarray)
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _to_device(value):
    if type(value) is np.ndarray:
        return value.view(DeviceArray)
    if isinstance(value, tuple):
        return tuple(_to_device(v) for v in value)
    return value


def _device_function(function, transfer: bool = False):
    """A NumPy function on device arrays; only transfers (``asarray``) accept host arrays."""

    def wrapped(*args, **kwargs):
        if not transfer:
            _check(_flatten(args) + _flatten(tuple(kwargs.values())), function.__name__)
        return _to_device(function(*_unwrap(args), **_unwrap(kwargs)))

    wrapped.__name__ = getattr(function, "__name__", "function")
    return wrapped


def _namespace(source, name: str, transfers=()) -> types.SimpleNamespace:
    members = {}
    for attribute in dir(source):
        value = getattr(source, attribute)
        if attribute.startswith("_"):
            continue
        if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, np.ufunc)) or type(value).__name__ in (
            "_ArrayFunctionDispatcher",
        ):
            members[attribute] = _device_function(value, transfer=attribute in transfers)
        else:
            members[attribute] = value
    namespace = types.SimpleNamespace(**members)
    namespace.__name__ = name
    return namespace


#: the strict device module: ``xp.asarray`` transfers to the device, everything else
#: works on device arrays only
xp = _namespace(np, "strict_device", transfers=("asarray", "array", "ascontiguousarray"))
xp.fft = _namespace(np.fft, "strict_device.fft")
xp.linalg = _namespace(np.linalg, "strict_device.linalg")
xp.ndarray = DeviceArray


def fake_cupy(free_bytes: int) -> types.SimpleNamespace:
    """:data:`xp` plus the few CuPy attributes the GPU backend asks for (free memory)."""
    module = types.SimpleNamespace(**vars(xp))
    module.__name__ = "cupy"
    device = types.SimpleNamespace(mem_info=(free_bytes, 2 * free_bytes))
    module.cuda = types.SimpleNamespace(Device=lambda *args: device)
    pool = types.SimpleNamespace(free_bytes=lambda: 0)
    module.get_default_memory_pool = lambda: pool
    return module
