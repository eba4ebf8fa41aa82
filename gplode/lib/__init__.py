"""Numerical building blocks with no knowledge of structures or devices: special functions,
real spherical harmonics, B-splines, quintic splines, quadrature, the k-sphere."""
