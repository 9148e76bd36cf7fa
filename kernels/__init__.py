"""Triton kernels, shipped inside the wheel as ``uasan.kernels``.

Import kernel modules lazily (from the dispatchers in ``uasan.ops``): importing this package never imports
Triton and never queries the GPU.
"""
