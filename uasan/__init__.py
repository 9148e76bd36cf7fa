"""uasan: open-vocabulary video scene graph generation (UASAN) with fast C++ and Triton ops."""

__version__ = "0.1.0"
