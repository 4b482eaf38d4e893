import subprocess
import sys

import pytest

from deffiller.cli import GROUPS, build_parser, main


def test_every_group_has_help(capsys):
    parser = build_parser()
    for group in GROUPS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([group, "--help"])
        assert exit_info.value.code == 0
        assert "usage: deffiller " + group in capsys.readouterr().out


def test_user_error_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "deffiller", "data", "split", str(tmp_path / "nowhere"),
                             "--out", str(tmp_path / "m.csv")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "deffiller: error:" in result.stderr and "no dataset found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m.csv").exists()


def test_synth_via_cli(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--per-class", "1"]) == 0
    assert "wrote 3 synthetic pairs" in capsys.readouterr().out
