"""Run-level plumbing around the search: run directories, resume, settings checks, one-line
errors, ``status.json``, console routing. Plain Python: only ``run.py`` / ``__main__.py`` know
Hydra and call into these modules with plain values.
"""
