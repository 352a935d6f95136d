"""The trial image's own inputs, hostile (issue 34): every numeric flag and setting with numeric
extremes, its KUBEFLOW_TRAINER_OPT_* variables, Katib's architecture and genotype strings, data
files and checkpoints. Each is refused as bad input (exit 2, the field named) or accepted as a
finite number in range; no traceback; each answer within 2 s of CPU.

The trial's work after its flags is replaced by a stub: what is under test is what reaches it.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from trial_image import cli
from trial_image.errors import InputError

EXTREMES = ["0", "-1", "-0", "nan", "NaN", "inf", "-inf", "1e300", "1e999", "1e20", "1e9", "٣",
            "３", "9" * 400, "", "0x10", "1_000", " 7 "]
NON_NUMBERS = {"nan", "NaN", "inf", "-inf", "1e300", "1e999", "٣", "３", "9" * 400, "", "0x10",
               "1_000"}


def numeric_flags(parser) -> dict[str, str]:
    """Flag -> its destination, for every flag read as a number."""
    return {a.option_strings[0]: a.dest for a in parser._actions
            if getattr(a.type, "__name__", "") in ("integer", "number")}


@pytest.fixture
def reached(monkeypatch):
    """What the trial (or the DARTS search) would have started with."""
    seen = []
    monkeypatch.setattr(cli, "run", lambda args, per_block: seen.append(vars(args)) or 0)
    import trial_image.darts.run

    monkeypatch.setattr(trial_image.darts.run, "run_darts",
                        lambda args: seen.append(vars(args)) or 0)
    return seen


def answer(argv, capsys) -> tuple[int, str]:
    started = time.thread_time()
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's refusal
        code = exc.code
    assert time.thread_time() - started < 2.0, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def test_every_numeric_flag_takes_only_finite_numbers_in_its_range(reached, capsys):
    flags = numeric_flags(cli.build_parser())
    assert {"--epochs", "--learning-rate", "--embedding-size", "--sequence-length",
            "--time-budget", "--mlflow-retry-seconds", "--batch-size"} <= set(flags)
    refused = accepted = 0
    for flag, dest in flags.items():
        for value in EXTREMES:
            code, err = answer(["--dataset=digits", f"{flag}={value}"], capsys)
            if code == 2:
                refused += 1
                assert f"argument {flag}" in err or flag in err, (flag, value, err)
            else:
                accepted += 1
                assert code == 0 and value not in NON_NUMBERS, (flag, value)
                parsed = reached[-1][dest]
                assert math.isfinite(parsed) and abs(parsed) <= 1e15, (flag, value, parsed)
    assert refused > 10 * len(flags) and accepted > 0
    for flag, value in [("--embedding-size", "1e9"), ("--sequence-length", "1000000000"),
                        ("--time-budget", "-1"), ("--mlflow-retry-seconds", "1e300"),
                        ("--learning-rate", "1e999"), ("--epochs", "1e20")]:
        assert answer(["--dataset=digits", f"{flag}={value}"], capsys)[0] == 2, flag


@pytest.mark.parametrize(("value", "accepted"), [("60000x60000", False), ("0x32", False),
                                                 ("٣x٣", False), ("64x48", True)])
def test_the_image_size_is_bounded(reached, capsys, value, accepted):
    code, err = answer(["--dataset=digits", f"--image-size={value}"], capsys)
    assert (code == 0) is accepted, err
    if not accepted:
        assert "--image-size" in err


def test_per_block_numbers_are_bounded(reached, capsys, monkeypatch):
    from trial_image.frontends.dispatch import _each

    assert _each(3, {1: "5"}, 2, int, "kernel-size") == [5, 3]
    for raw in ("1e9", "٣", "inf", "0", "99"):
        with pytest.raises(InputError, match="--kernel-size-1: invalid value"):
            _each(3, {1: raw}, 2, int, "kernel-size")
    with pytest.raises(InputError, match="an integer from 1 to 65536"):
        _each(32, {2: "100000"}, 2, int, "filters")


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("KUBEFLOW_TRAINER_OPT_EPOCHS", "1e20", "KUBEFLOW_TRAINER_OPT_EPOCHS"),
    ("KUBEFLOW_TRAINER_OPT_LEARNING_RATE", "nan", "KUBEFLOW_TRAINER_OPT_LEARNING_RATE"),
    ("KUBEFLOW_TRAINER_OPT_HELP", "1", "the trial has no flag --help"),
    ("KUBEFLOW_TRAINER_OPT_H", "1", "the trial has no flag --h"),
])
def test_trainer_variables_are_parameters_with_the_flags_bounds(reached, capsys, monkeypatch,
                                                                variable, value, message):
    monkeypatch.setenv(variable, value)
    code, err = answer(["--dataset=digits"], capsys)
    assert code == 2 and message in err and not reached, err


@pytest.mark.parametrize(("settings", "message"), [
    ("{'num_epochs': '1e300'}", "num_epochs"),
    ("{'num_epochs': '1e9'}", "num_epochs must be <= 100000"),
    ("{'w_lr': 'nan'}", r"w_lr: expected a number \(finite\)"),
    ("{'alpha_lr': 'inf'}", r"alpha_lr: expected a number \(finite\)"),
    ("{'batch_size': '٣'}", "batch_size: expected an integer"),
])
def test_darts_settings_are_finite_and_bounded(settings, message):
    from trial_image.darts.settings import parse_num_layers, parse_settings

    with pytest.raises(InputError, match=message):
        parse_settings(settings)
    for layers in ("inf", "nan", "1e300", "65"):
        with pytest.raises(InputError, match="--num-layers"):
            parse_num_layers(layers)


@pytest.mark.parametrize(("parse", "text", "message"), [
    ("architecture", "-" * 60_000 + "1", "operators"),
    ("architecture", "[" * 10_000 + "]" * 10_000, "nested"),
    ("architecture", "1" * (1 << 21), "characters"),
    ("genotype", "Genotype(normal=" + "1+" * 30_000 + "1)", "operators"),
    ("genotype", "Genotype(normal=range(0, 999999999))", "cannot parse"),
])
def test_katib_strings_are_read_in_bounded_time_and_memory(parse, text, message):
    from trial_image.frontends import genotype
    from trial_image.frontends.wire import parse_literal

    started = time.thread_time()
    with pytest.raises(InputError, match=message):
        if parse == "architecture":
            parse_literal(text, "--architecture")
        else:
            genotype.parse_genotype(text)
    assert time.thread_time() - started < 2.0


def table_file(tmp_path, **columns) -> str:
    path = tmp_path / "t.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    return f"csv:{path}"


def test_non_finite_table_values_are_bad_input_naming_column_and_row(tmp_path):
    from trial_image import data

    rows = 40
    y = np.linspace(0, 1, rows).astype(object)
    y[7] = "inf"
    with pytest.raises(InputError, match=r"--target 'y': data row 8 holds 'inf'"):
        data.load(table_file(tmp_path, a=np.arange(rows), y=y),
                  table=data.TableOptions("y", "regression"))
    a = np.arange(rows).astype(object)
    a[3] = "-inf"
    with pytest.raises(InputError, match=r"column 'a': data row 4 holds '-inf'"):
        data.load(table_file(tmp_path, a=a, y=np.arange(rows) % 2),
                  table=data.TableOptions("y", "classification"))


def test_texts_that_are_all_blank_are_bad_input(tmp_path):
    from trial_image import data

    with pytest.raises(InputError, match="column 'body': every text is empty or blank"):
        data.load(table_file(tmp_path, body=["   "] * 30, y=[0, 1] * 15),
                  table=data.TableOptions("y", None, {"body": "text"}))


@pytest.mark.parametrize("latest", [
    {"trial": "t", "fingerprint": "f", "epoch": "x", "target": 3, "folder": 5},
    {"trial": "t", "fingerprint": "f", "epoch": True, "target": 3},
    [1, 2], "text",
])
def test_a_damaged_checkpoint_is_bad_input_naming_its_file(tmp_path, latest):
    from trial_image.checkpoint import read

    (tmp_path / "latest.json").write_text(json.dumps(latest))
    with pytest.raises(InputError, match=f"{tmp_path}/latest.json is not a nasflow checkpoint"):
        read(tmp_path)


@pytest.mark.parametrize("argv", [
    ["--dataset=digits", "--metrics-file=/proc/self/metrics"],
    ["--dataset=digits", "--metrics-file=/sys/x"],
])
def test_outputs_under_proc_or_sys_are_refused(reached, capsys, argv):
    code, err = answer(argv, capsys)
    assert code == 2 and "--metrics-file" in err and not reached


def test_the_shard_writer_refuses_proc(tmp_path, capsys):
    from trial_image.data.shard_writer import main

    assert main([f"dir:{tmp_path}", "/proc/x"]) == 2
    assert "out: '/proc/x' is under /proc" in capsys.readouterr().err


def test_csv_edge_cases_are_bad_input_in_bounded_memory(tmp_path):
    """A device or a FIFO is not a file; a header line of hundreds of MB is refused before it is
    parsed; a repeated column name is refused, naming both columns."""
    import os

    from tests.test_fuzz import PeakRss
    from trial_image import data

    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        with pytest.raises(InputError, match="not a regular file"):
            data.load(f"csv:{path}", table=data.TableOptions("y"))
    wide = tmp_path / "wide.csv"
    wide.write_bytes(b"a," * (100 << 20) + b"y\n")  # one 200 MB line
    with PeakRss() as rss, pytest.raises(InputError, match=r"header\) is longer than 1048576"):
        data.load(f"csv:{wide}", table=data.TableOptions("y"))
    assert rss.grown_mib < 600, rss.grown_mib  # the file's bytes, not a parsed frame
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("a,b,a,y\n1,2,3,0\n" * 1)
    with pytest.raises(InputError, match="columns 1 and 3 are both named 'a'"):
        data.load(f"csv:{repeated}", table=data.TableOptions("y"))
