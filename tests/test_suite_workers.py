"""The suite's own set-up: `make test` runs it on two workers (pytest-xdist ``--dist loadgroup``), one module per
unit of work and the modules that share a session-scoped build (:data:`conftest.SHARED_BUILDS`) in one unit, so
that the build is made once. If grouping silently stopped (as with pytest 9.2, pytest-dev/pytest-xdist#1386), the
shared build would be made on both workers and the suite would take minutes longer."""

import pytest

from conftest import SHARED_BUILDS, _group


def test_every_test_is_in_its_modules_group(request):
    marks = [m.args[0] for m in request.node.iter_markers("xdist_group")]
    assert marks == ["test_suite_workers"]
    assert _group("test_pseudo_e2e") == _group("test_integration_e2e") == "tiny_pipeline"
    assert all(_group(m) == g for g, mods in SHARED_BUILDS.items() for m in mods)
    if request.config.getvalue("loadgroup"):  # a worker of --dist loadgroup: the scheduler sees the group in the id
        assert request.node.nodeid.endswith("@test_suite_workers"), request.node.nodeid
