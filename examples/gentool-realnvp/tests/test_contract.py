"""The family keeps gentool's family contract: the suite every built-in family runs too."""

from gentool.testing import FamilyContract


class TestRealNVPContract(FamilyContract):
    """Train steps, checkpoints, resume, sampling, scoring and bench, as gentool checks them
    (the model's size comes from the family's ``test_config``)."""

    family_name = "realnvp"
