"""Every registered family keeps the family contract (gentool.testing.FamilyContract)."""

import pytest

from gentool.registry import get_registry
from gentool.testing import FamilyContract

FAMILIES = sorted(get_registry().families)


class TestEveryFamily(FamilyContract):
    @pytest.fixture(scope="class", params=FAMILIES)
    @classmethod
    def family(cls, request):
        return get_registry().family(request.param)


def test_the_families_include_the_built_ins():
    assert {"made", "maf", "iaf", "cyclegan", "pix2pix"} <= set(FAMILIES)
