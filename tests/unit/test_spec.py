import pytest

from modelport.errors import BadInput
from modelport.spec import TensorSpec, merge_specs, parse_input, parse_input_range


@pytest.mark.parametrize("text, expected", [
    ("x:1x3x224x224", TensorSpec("x", (1, 3, 224, 224), "float32")),
    ("ids:batchx128:int64", TensorSpec("ids", ("batch", 128), "int64")),
    ("input.1:2x4:fp16", TensorSpec("input.1", (2, 4), "float16")),
    ("flag:1:bool", TensorSpec("flag", (1,), "bool")),
])
def test_parse_input(text, expected):
    assert parse_input(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ("x", "expected NAME:SHAPE"),
    ("x:", "expected NAME:SHAPE"),
    (":1x3", "expected NAME:SHAPE"),
    ("x:1x-3", "bad dimension '-3'"),
    ("x:1x0x3", "dimension of 0"),
    ("x:1x3:complex7", "Unknown dtype"),
    ("3x:1x3", "not a valid tensor name"),
])
def test_parse_input_rejects(text, fragment):
    with pytest.raises(BadInput) as info:
        parse_input(text)
    assert fragment in info.value.one_line()
    assert info.value.exit_code == 2


def test_parse_input_range():
    r = parse_input_range("ids:0:30522")
    assert (r.name, r.low, r.high) == ("ids", 0.0, 30522.0)
    for bad in ("ids:5", "ids:a:b", "ids:3:1"):
        with pytest.raises(BadInput):
            parse_input_range(bad)


def test_merge_specs_overrides_by_name_and_rejects_unknown():
    model = [TensorSpec("a", (1, 2)), TensorSpec("b", ("n", 3))]
    merged = merge_specs(model, [TensorSpec("b", (4, 3))])
    assert merged == [TensorSpec("a", (1, 2)), TensorSpec("b", (4, 3))]
    with pytest.raises(BadInput, match="model's inputs are: a, b"):
        merge_specs(model, [TensorSpec("c", (1,))])
