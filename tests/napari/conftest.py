"""Headless napari for the plugin's tests: Qt's offscreen platform, napari's test fixtures here only.

* ``QT_QPA_PLATFORM=offscreen`` unless set: CI has no display. With a display (or under Xvfb) Qt's
  offscreen platform still renders through GLX, so screenshots work there too.
* Without any display Qt gives no OpenGL context: vispy's ``glGetParameter`` then fails on the
  ``None`` that ``glGetString`` returns, and napari cannot create layer visuals
  (https://github.com/vispy/vispy/issues/2736; napari-spatialdata patches its tests the same way).
  :func:`_gl_queries_without_context` answers those queries with "no extensions" and napari's
  fallback texture size, for these tests only; with a GL context the real answers are kept.
* napari's pytest plugin is disabled suite-wide (``-p no:napari`` in pyproject.toml: its
  session-wide LogRecord factory turns log arguments into strings, which would break "%d"-style
  messages of other tests); its fixtures used here are imported from it below, and its options
  are added by tests/conftest.py (options can only come from the root conftest).
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

try:
    from napari.utils import _testsupport as napari_testsupport
except ImportError:  # the napari extra is not installed: the test modules skip with the reason
    napari_testsupport = None
if napari_testsupport is not None:  # the fixtures, and the report hook make_napari_viewer reads
    make_napari_viewer = napari_testsupport.make_napari_viewer
    mock_app_model = napari_testsupport.mock_app_model
    _disable_qt_warnings = napari_testsupport._disable_qt_warnings
    pytest_runtest_makereport = napari_testsupport.pytest_runtest_makereport

FALLBACK_TEXTURE_SIZE = 2048
GL_MAX_3D_TEXTURE_SIZE = 32883  # not among vispy's constants


@pytest.fixture(autouse=True)
def _gl_queries_without_context(monkeypatch):
    try:
        import vispy.gloo.gl as gl
        import vispy.gloo.gl._pyopengl2 as pyopengl2
    except ImportError:
        yield
        return
    real = pyopengl2.glGetParameter
    texture_sizes = (gl.GL_MAX_TEXTURE_SIZE, GL_MAX_3D_TEXTURE_SIZE)

    def get_parameter(name):
        try:
            value = real(name)
        except AttributeError:  # glGetString gave None: there is no GL context
            return ""
        if name in texture_sizes and not value:  # 0 or () without a context
            return FALLBACK_TEXTURE_SIZE
        return value

    monkeypatch.setattr(pyopengl2, "glGetParameter", get_parameter)
    monkeypatch.setattr(gl, "glGetParameter", get_parameter)
    yield
