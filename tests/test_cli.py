"""The CLI, in-process: exit codes, one-line errors, train with cache, runs, reproduce."""

import io

import pytest
from helpers import SUBSET

from kmnist_core.cli import main


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv, needle", [
    (["train", "--hidden", "128,,64"], "hidden_layers must be"),
    (["train", "--epochs", "0"], "epochs must be an integer in the range [1, 200]; got 0"),
    (["train", "--weight-decay", "nan"], "weight_decay must be"),
    (["train", "--activation", "swish"], "activation must be one of"),
    (["train", "--preset", "nope"], "argument --preset: invalid choice"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_bad_flags_exit_2_with_one_line(argv, needle, tmp_path):
    code, out, err = run("--runs-dir", str(tmp_path), *argv)
    assert code == 2 and needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_data_dir_exits_2(tmp_path):
    code, _, err = run("--data-dir", str(tmp_path / "none"), "--runs-dir", str(tmp_path), "train", "--epochs", "1")
    assert code == 2 and "does not exist" in err and err.count("\n") == 1


def test_help_lists_presets(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    assert "ref-relu-adam" in capsys.readouterr().out


def test_train_then_cached_then_runs(tmp_path):
    args = ("--data-dir", str(SUBSET), "--runs-dir", str(tmp_path), "train", "--hidden", "32", "--epochs", "2",
            "--batch-size", "256")
    code, out, _ = run(*args)
    assert code == 0 and "epoch   2/2" in out
    lines = out.splitlines()
    assert lines[-2].startswith("best val accuracy: 0.") and lines[-1].startswith("test accuracy: 0.")
    code2, out2, _ = run(*args)
    assert code2 == 0 and "(cached)" in out2 and lines[-1] == out2.splitlines()[-1]
    code3, out3, _ = run("--runs-dir", str(tmp_path), "runs")
    assert code3 == 0 and out3.count("completed") == 1 and "[32] relu adam wd=0 · epochs 2, batch 256" in out3


def test_preset_with_override(tmp_path):
    code, out, _ = run("--data-dir", str(SUBSET), "--runs-dir", str(tmp_path), "train", "--preset",
                       "ref-relu-sgd", "--epochs", "1", "--batch-size", "512")
    assert code == 0
    code, out, _ = run("--runs-dir", str(tmp_path), "runs")
    assert "[128, 128, 64] relu sgd" in out and "· epochs 1, batch 512" in out  # the options it was trained with


def test_every_command_has_help(capsys):
    from kmnist_core.cli import build_parser

    parser = build_parser()
    commands = [[]]
    for action in parser._subparsers._group_actions:  # argparse's own registry of subcommands
        for name, sub in action.choices.items():
            commands.append([name])
            nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
            commands += [[name, n] for a in nested for n in a.choices]
    for argv in commands:
        with pytest.raises(SystemExit) as e:
            main([*argv, "--help"])
        assert e.value.code == 0, argv
        assert "usage:" in capsys.readouterr().out
    assert ["sweep", "worker"] in commands and ["runs", "rename"] in commands
