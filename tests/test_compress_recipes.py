"""Recipe files: the shipped library validates, and every mistake is one line naming the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import hil

from harness.compress import recipes
from harness.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_library_has_validating_recipes_for_every_kind_of_step():
    lib = recipes.library()
    assert len(lib) >= 4
    kinds = set()
    for name, path in lib.items():
        r = recipes.load(path)
        assert r.name == name  # the file stem is the name `--recipes` accepts
        assert r.steps[-1].type in recipes.TERMINAL
        kinds |= {s.type for s in r.steps}
    assert {"quantize", "qat", "prune", "structured_prune", "distill"} <= kinds


def test_defaults_are_filled_and_the_implicit_last_step_is_fp32(tmp_path):
    r = recipes.load(write(tmp_path, "name: p\nsteps:\n  - prune: {sparsity: 0.5}\n"))
    assert [s.type for s in r.steps] == ["prune", "quantize"]
    assert r.steps[0].dump()["schedule"] == "polynomial" and r.steps[0].dump()["end"] == 0.7
    assert r.steps[1].dump()["variant"] == "fp32"
    assert r.train_value(r.steps[0], "epochs") == r.train.epochs == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nsteps:\n  - squeeze: {factor: 2}\n", "steps[0]: unknown step 'squeeze'"),
        ("name: x\nsteps:\n  - prune: {sparsity: 0.8, sparsty: 0.9}\n", "steps[0].prune.sparsty: unknown parameter"),
        ("name: x\nsteps:\n  - prune: {sparsity: 1.5}\n", "steps[0].prune.sparsity: Input should be less than 1"),
        ("name: x\nsteps:\n  - prune: {}\n", "steps[0].prune.sparsity: Field required"),
        (
            "name: x\nsteps:\n  - prune: {sparsity: 0.5, begin: 0.8, end: 0.2}\n",
            "steps[0].prune: Value error, end (0.2)",
        ),
        (
            "name: x\nsteps:\n  - quantize: {variant: int8}\n  - prune: {sparsity: 0.5}\n",
            "steps[0].quantize: 'quantize' produces the .tflite and must be the last step",
        ),
        ("name: x\nsteps:\n  - quantize: {variant: int4}\n", "steps[0].quantize.variant: Input should be"),
        (
            "name: x\nsteps:\n  - quantize: {variant: int8, aeq: static_int8}\n",
            "steps[0].quantize: Value error, give exactly one",
        ),
        ("name: x\nsteps:\n  - distill: {temperature: 2}\n", "steps[0].distill: Value error, give either 'student'"),
        (
            "name: x\nsteps:\n  - distill: {width: 0.5, teachers: [{model: t.keras, weigth: 2}]}\n",
            "steps[0].distill.teachers[0].weigth: unknown parameter",
        ),
        (
            "name: x\ntrain: {epochs: 0}\nsteps:\n  - qat: {}\n",
            "train.epochs: Input should be greater than or equal to 1",
        ),
        ("name: x\nsteps: []\n", "steps: List should have at least 1 item"),
        ("name: x\nstep:\n  - qat: {}\n", "step: unknown parameter"),
        ("steps:\n  - qat: {}\n", "name: Field required"),
        (
            "name: x\nsteps:\n  - {prune: {sparsity: 0.5}, qat: {}}\n",
            "steps: Value error, steps[0] must be one mapping",
        ),
        ("name: [unclosed\n", "line 2 column 1: malformed YAML"),
    ],
)
def test_bad_recipes_are_one_line_errors_naming_file_and_field(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        recipes.load(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}: ") and message in msg and "\n" not in msg, msg


def test_grid_expands_the_recipes_that_have_the_step(tmp_path):
    a = write(tmp_path, "name: a\nsteps:\n  - prune: {sparsity: 0.5}\n  - quantize: {variant: int8}\n", "a.yaml")
    b = write(tmp_path, "name: b\nsteps:\n  - quantize: {variant: int8}\n", "b.yaml")
    grid = recipes.parse_grid(["prune.sparsity=0.5,0.8", "seed=0,1"])
    out = recipes.expand([str(a), str(b)], grid)
    labels = [r.label for r in out]
    assert labels == [
        "a[sparsity=0.5,seed=0]",
        "a[sparsity=0.5,seed=1]",
        "a[sparsity=0.8,seed=0]",
        "a[sparsity=0.8,seed=1]",
        "b[seed=0]",
        "b[seed=1]",
    ]
    assert out[2].steps[0].params.sparsity == 0.8 and out[3].seed == 1  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="--grid distill.width: none of the recipes has a 'distill' step"):
        recipes.expand([str(b)], recipes.parse_grid(["distill.width=0.5"]))
    with pytest.raises(ConfigError, match=r"a.yaml: steps\[0\].prune.sparsity: Input should be less than 1"):
        recipes.expand([str(a)], recipes.parse_grid(["prune.sparsity=2"]))
    with pytest.raises(ConfigError, match="expected STEP.PARAM=V1,V2"):
        recipes.parse_grid(["prune.sparsity"])


def test_a_recipe_name_that_is_neither_file_nor_shipped_is_refused():
    with pytest.raises(ConfigError, match="recipe 'nope': no such file and no shipped recipe.*ptq-int8"):
        recipes.resolve("nope")


def test_cli_reports_a_bad_recipe_on_one_line_with_exit_3(tmp_path):
    bad = write(tmp_path, "name: x\nsteps:\n  - prune: {sparsity: 0.8, shedule: constant}\n")
    p = hil("sweep", "model.keras", "--recipes", f"ptq-int8,{bad}", cwd=tmp_path)
    assert p.returncode == 3
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("hil: error:")]
    assert err == [f"hil: error: {bad}: steps[0].prune.shedule: unknown parameter"], p.stderr
    listed = hil("sweep", "--list-recipes", cwd=tmp_path)
    assert listed.returncode == 0 and "distill-half-int8" in listed.stdout and "qat-int8" in listed.stdout


def test_duplicate_keys_and_bytes_that_are_not_utf8_are_one_line_errors(tmp_path):
    """With two `steps:` keys the last one used to win silently (another candidate than the file
    seems to say); bytes that are not UTF-8 used to end in a UnicodeDecodeError traceback."""
    dup = write(tmp_path, "name: x\nsteps:\n  - prune: {sparsity: 0.5}\nsteps:\n  - quantize: {variant: int8}\n")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: x\ndescription: élagage\nsteps:\n  - quantize: {variant: int8}\n".encode("latin-1"))
    nested = write(tmp_path, "name: x\nsteps:\n  - prune: {sparsity: 0.5, sparsity: 0.8}\n", "nested.yaml")
    expected = {
        dup: f"{dup}: line 4 column 1: duplicate key 'steps' at the top level (first on line 2)",
        latin1: f"{latin1}: line 2 column 14: not UTF-8 text (byte 0xe9); save the file as UTF-8",
        nested: f"{nested}: line 3 column 28: duplicate key 'sparsity' in steps[0].prune (first on line 3)",
    }
    for path, message in expected.items():
        p = hil("sweep", "model.keras", "--recipes", str(path), cwd=tmp_path)
        assert p.returncode == 3, p.stderr
        assert "Traceback" not in p.stderr
        err = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(err) == 1 and err[0].startswith(f"hil: error: {message}"), p.stderr
    with pytest.raises(ConfigError, match="duplicate key 'steps'"):  # --grid reads the file a second time
        recipes.expand([str(dup)], recipes.parse_grid(["seed=0,1"]))
