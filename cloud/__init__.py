"""Edgehouse cloud service: sync ingest, storage, model registry and routing.

OR-Tools' routing library crashes the process (SIGSEGV / ``std::length_error``) when
TensorFlow was imported before ``ortools.constraint_solver.pywrapcp`` (measured here, 10 runs
out of 10; or-tools issues #2047 and #3230). Every cloud process may end up holding both
(training helpers, routing service), so the cloud package imports ``pywrapcp`` first,
before anything else of ours can import TensorFlow. ``tests/test_tf_ortools_guard.py``
guards this.
"""

try:  # pragma: no cover - depends on the installed extras
    from ortools.constraint_solver import pywrapcp as _pywrapcp
except ImportError:  # routing extra not installed: nothing to guard
    _pywrapcp = None
