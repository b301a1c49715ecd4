"""User errors end with one line on stderr and exit status 2, never a traceback."""

import pytest

from gentool.cli import main


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A tiny trained MAF run, shared by the checks that need a real checkpoint."""
    out = tmp_path_factory.mktemp("runs") / "maf"
    args = [
        "train",
        "maf",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--hidden-features",
        "16",
        "--num-layers",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    return out


CASES = [
    (["train", "maf", "--data", "digits", "--epochs", "ten"], "--epochs: 'ten' is not a valid int"),
    (["train", "maf", "--data", "digits", "--epoch", "3"], "No such option: --epoch"),
    (["train", "maf"], "--data is required"),
    (["train", "maf", "--data", "/no/such/folder"], "/no/such/folder"),
    (["train", "nope", "--data", "digits"], "unknown family 'nope'; known families:"),
    (["train", "maf", "--data", "digits", "--hidden-features", "0"], "below the minimum"),
    (["train", "maf", "--data", "toy-shapes"], "this family needs images"),
    (["train", "pix2pix", "--data", "digits"], "this family needs paired"),
    (["sample", "maf", "--checkpoint", "/no/such/run"], "no such file or run folder"),
    (["sample", "cyclegan", "--checkpoint", "x"], "family 'cyclegan' cannot sample"),
    (["translate", "maf", "--checkpoint", "x", "--images", "x", "--out", "y"], "cannot translate"),
    (["score", "maf", "--checkpoint", "x"], "exactly one of --images DIR or --data"),
    (["train", "maf", "--data", "digits", "--max-steps", "0"], "--max-steps must be at least 1"),
    (["train", "cyclegan", "--data", "toy-shapes", "--workers", "-1"], "--workers must be 0"),
    (["bench", "cyclegan", "--image-size", "0"], "--image-size must be a positive number"),
    (["bench", "pix2pix", "--channels", "2"], "--channels must be 1 (grey) or 3 (RGB), not 2"),
]


@pytest.mark.parametrize(("args", "message"), CASES)
def test_user_errors(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_checkpoint_errors(run_folder, tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    cases = [
        (["score", "maf", "--checkpoint", str(bad), "--data", "digits"], "not a readable"),
        (
            [
                "translate",
                "cyclegan",
                "--checkpoint",
                str(run_folder),
                "--images",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
            ],
            "is a 'maf' checkpoint, not 'cyclegan'",
        ),
        (
            ["score", "maf", "--checkpoint", str(run_folder), "--data", "digits", "--split", "val"],
            "no 'val' split",
        ),
        (["sample", "maf", "--checkpoint", str(run_folder), "--temperature", "0"], "positive"),
        (["train", "maf", "--data", "digits", "--out", str(run_folder)], "already holds a run"),
        (
            ["train", "maf", "--resume", "--out", str(run_folder), "--hidden-features", "8"],
            "--hidden-features cannot change when resuming",
        ),
        (["train", "maf", "--resume", "--out", str(tmp_path)], "no resume state"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, err
        assert err.count("\n") == 1


def test_debug_shows_the_traceback(capsys):
    assert main(["--debug", "train", "maf"]) == 2  # the status of a user error all the same
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "gentool.errors.UserError: --data is required" in err
