"""The ``logic`` protocol (issue 19, item 4): a task from a program file and a label
expression. MNIST addition written as such a spec must train exactly as the specialised
``addition`` protocol does; another program trains its network; bad options are SpecErrors
naming the option."""

from __future__ import annotations

import pytest

import paralab


def spec(protocol: dict, **extra: object) -> dict:
    return {"name": "logic_test", "dataset": "digits", "seed": 3,
            "model": {"name": "mlp", "hidden": [64]}, "protocol": protocol,
            "method": {"name": "adam", "lr": 0.003}, "output": None, **extra}


def test_mnist_addition_as_a_logic_spec_equals_the_addition_protocol() -> None:
    logic = paralab.run(spec({"name": "logic", "program": "mnist_addition", "label": "A + B",
                              "examples": 300, "test_examples": 100, "batch_size": 16}))
    addition = paralab.run(spec({"name": "addition", "digits_per_number": 1, "pairs": 300,
                                 "test_pairs": 100, "batch_size": 16}))
    assert logic.metrics["test/query_accuracy"] == addition.metrics["test/sum_accuracy"]
    assert logic.metrics["test/accuracy"] == addition.metrics["test/accuracy"]
    assert 0.0 < logic.metrics["test/query_accuracy"] < 1.0


def test_a_program_file_trains_the_network_it_names(tmp_path) -> None:  # noqa: ANN001
    program = tmp_path / "difference.pl"
    program.write_text(
        "nn(digit_net, [X], Y, [0,1,2,3,4,5,6,7,8,9]) :: digit(X, Y).\n"
        "difference(X, Y, Z) :- digit(X, A), digit(Y, B), Z is A - B.\n"
    )
    result = paralab.run(spec({"name": "logic", "program": str(program),
                               "query": "difference(first, second, D)",
                               "label": "FIRST - SECOND", "network": "digit_net",
                               "epochs": 2, "batch_size": 16}))
    # learnt from differences only: far above the 0.1 of chance on single digits
    assert result.metrics["test/accuracy"] > 0.5
    assert 0.0 <= result.metrics["test/query_accuracy"] <= 1.0


@pytest.mark.parametrize("options, message", [
    ({"program": "nope.pl"}, "program = 'nope.pl': no such file"),
    ({"label": "A + C"}, "label = 'A \\+ C' uses C"),
    ({"network": "other"}, "network = 'other'.*use 'digit_net'"),
    ({"query": "addition(a, b"}, "query = 'addition\\(a, b': line 1, column 14"),
])
def test_bad_options_are_spec_errors(options: dict, message: str) -> None:
    with pytest.raises(paralab.SpecError, match=message):
        paralab.run(spec({"name": "logic", **options}))


def test_the_shipped_spec_runs() -> None:
    import tomllib
    from pathlib import Path

    import paralab_neurosymbolic

    path = Path(paralab_neurosymbolic.__file__).with_name("data") / "mnist_addition.toml"
    shipped = tomllib.loads(path.read_text("utf-8"))
    shipped["output"] = None
    shipped["protocol"].update(examples=100, test_examples=50)
    result = paralab.run(shipped)
    assert 0.0 <= result.metrics["test/query_accuracy"] <= 1.0
    assert result.metrics["test/accuracy"] > 0.1  # trained (chance is 0.1)
