"""Output formats: each a package of pure kernels and small named pieces for the engine.

``folder``: the Cellucid export folder (``var/`` payloads + ``var_manifest.json``),
both layout generations (cellucid 0.0.9 and 0.9.2). ``store``: the Cellucid-ready
AnnData zarr store of cellucid 0.9.5 and later. ``detect``: which of the two a
path holds, for the functions that take either. A format never imports another
format, nor the engine; ``detect`` sits here, inside neither.
"""
