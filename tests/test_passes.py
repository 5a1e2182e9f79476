"""The pass schemas are the one definition: recipe steps, compress options and docs/passes.md follow them."""

import dataclasses
from pathlib import Path

import pytest

from edgekit import passes
from edgekit.errors import ConfigError


def test_docs_are_generated_from_the_schema():
    doc = Path(__file__).parents[1] / "docs" / "passes.md"
    assert doc.read_text() == passes.markdown(), "regenerate: python -m edgekit.passes > docs/passes.md"


def test_recipe_steps_expose_every_recipe_field_with_the_schema_default():
    pytest.importorskip("pydantic")
    from edgekit.recipe import DistillStep, PruneStep, QuantizeStep

    for step, cls in ((PruneStep, passes.PruneConfig), (DistillStep, passes.DistillConfig),
                      (QuantizeStep, passes.QuantizeConfig)):
        for f in passes.recipe_fields(cls):
            assert f.name in step.model_fields, (step.__name__, f.name)
            if not f.metadata["required_in_recipe"] and f.default is not dataclasses.MISSING:
                assert step.model_fields[f.name].default == f.default, (step.__name__, f.name)
    assert len(passes.recipe_fields(passes.QuantizeConfig)) == len(dataclasses.fields(passes.QuantizeConfig)) == 12
    assert DistillStep.model_fields["alpha"].default == passes.DistillConfig().alpha == 0.3


def test_compress_options_come_from_the_schema():
    from click.testing import CliRunner

    from edgekit.commands.compress import compress

    flags = {o for p in compress.params for o in p.opts}
    for cls in (passes.PruneConfig, passes.DistillConfig, passes.QuantizeConfig, passes.GateConfig):
        for f in dataclasses.fields(cls):
            if f.metadata["cli"] is not False:
                assert (f.metadata["cli"] or "").split("/")[0] in flags, f.name
    help_text = CliRunner().invoke(compress, ["--help"], terminal_width=200).output
    assert "Weight of the hard-label loss" in help_text and "[default: 0.3]" in help_text


@pytest.mark.parametrize("cls,field,value,message", [
    (passes.PruneConfig, "sparsity", 1.0, "Pruning sparsity must be strictly between 0 and 1; received 1.0"),
    (passes.PruneConfig, "stages", 1.5, "Pruning stages must be an integer; received 1.5"),
    (passes.DistillConfig, "alpha", -0.1, "Distillation alpha must be between 0 and 1; received -0.1"),
    (passes.QuantizeConfig, "activation_type", "s8", "Unknown quantization activation_type 's8'. Available: auto"),
    (passes.QuantizeConfig, "keep_float", "conv1", "Quantization keep_float must be a list; received 'conv1'"),
    (passes.QuantizeConfig, "precision", "int8,fp32", "Unknown quantization precision 'fp32'. Available: int8, "
                                                      "int16x8, fp16, int8-weights"),
    (passes.QuantizeConfig, "precision", [], "Quantization precision is empty"),
    (passes.GateConfig, "max_drop", -1, "Gate max_drop must be >= 0; received -1"),
    (passes.GateConfig, "max_drop", float("nan"), "Gate max_drop must be a number; received nan"),
])
def test_one_message_per_bad_value(cls, field, value, message):
    with pytest.raises(ConfigError) as e:
        cls(**{field: value}).validate()
    assert message in str(e.value)


def test_precision_is_a_list_from_one_name_a_comma_string_or_a_list():
    from edgekit.recipe import QuantizeStep

    assert passes.QuantizeConfig().validate().precision == ["int8"]
    assert passes.QuantizeConfig(precision="int8, fp16,int8").validate().precision == ["int8", "fp16"]
    assert QuantizeStep(type="quantize", precision="fp16").precision == ["fp16"]
    assert QuantizeStep(type="quantize", precision=["int16x8", "fp16"]).precision == ["int16x8", "fp16"]
    with pytest.raises(ConfigError, match="--int8-io .*int8 alone; received precision int8,fp16"):
        passes.QuantizeConfig(precision=["int8", "fp16"], int8_io=True).validate()


def test_each_format_says_which_precisions_it_makes():
    from edgekit import formats

    assert formats.get("tflite").precisions == formats.get("onnx").precisions == formats.PRECISIONS
    formats.check_precisions(["tflite", "onnx", "openvino"], ["int8", "fp16", "int8-weights"])
    with pytest.raises(ConfigError) as e:
        formats.check_precisions(["tflite", "openvino"], ["fp16", "int16x8"])
    assert str(e.value) == ("OpenVINO IR cannot make int16x8 (NNCF has no 16-bit activation quantization for "
                            "OpenVINO IR). Allowed for openvino: int8, fp16, int8-weights; formats that make "
                            "int16x8: tflite, onnx")


def test_the_train_section_is_the_train_schema_with_its_messages(tmp_path):
    """A recipe's `train:` is TrainConfig's fields and defaults, and a bad value gets TrainConfig's own line."""
    pytest.importorskip("pydantic")
    import yaml

    from edgekit.recipe import TrainSpec, load_recipe

    assert TrainSpec().model_dump() == dataclasses.asdict(passes.TrainConfig().validate())
    base = {"name": "t", "data": {"name": "digits"}, "model": {"name": "ds_cnn_s"}}
    for train, message in (({"batch_size": 0}, "train.batch_size: Train batch_size must be >= 1; received 0"),
                           ({"seed": 1.5}, "train.seed: Train seed must be an integer; received 1.5"),
                           ({"epoch": 3}, "train.epoch: unknown field (allowed: augment, batch_size, epochs")):
        p = tmp_path / "r.yaml"
        p.write_text(yaml.safe_dump({**base, "train": train}))
        with pytest.raises(ConfigError) as e:
            load_recipe(p)
        assert message in str(e.value)
    with pytest.raises(ConfigError, match="Train augment must be true, false or a mapping"):
        passes.TrainConfig(augment="yes").validate()
    assert passes.TrainConfig(augment={"copies": 2}).validate().augment == {"copies": 2}
