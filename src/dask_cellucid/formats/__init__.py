"""Output formats: each a package of pure kernels and small named pieces for the engine.

``folder``: the Cellucid export folder (``var/`` payloads + ``var_manifest.json``),
both layout generations. A format never imports another format, nor the engine.
"""
