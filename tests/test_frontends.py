"""Front ends → CandidateSpec, and the builder honouring every parameter."""

from __future__ import annotations

import json

import pytest

from tests.conftest import wire_example
from trial_image.errors import InputError
from trial_image.frontends import enas, genotype, hyperparams
from trial_image.spec import CandidateSpec, Frame

DIGITS = Frame(input_shape=(8, 8, 1), num_classes=10, input_scale=1 / 16)


def adapted_nn_config(key: str = "ENAS nn_config") -> str:
    """Katib's literal nn_config with input_sizes changed to digits' 8×8×1."""
    return wire_example(key).replace("'input_sizes': [32, 32, 3]", "'input_sizes': [8, 8, 1]")


@pytest.mark.parametrize("quote", ["", '"'])
def test_enas_wire_example_parses_with_or_without_outer_quotes(quote):
    spec = enas.to_spec(quote + wire_example("ENAS architecture") + quote,
                        quote + adapted_nn_config() + quote, frame=DIGITS)
    assert spec.source == "enas"
    assert [n.op for n in spec.nodes] == ["conv"] * 5 + ["sep_conv"] + ["conv"] * 2
    # [22, 1, 0]: layer 3 = op 22, fed by the network input (bit 0) and, implicitly, layer 2.
    assert spec.nodes[2].inputs == (0, 2)
    # [11, 0, 1, 1, 0, 1, 1]: layer 7 fed by layers 1, 2, 4, 5 and implicitly 6.
    assert spec.nodes[6].inputs == (1, 2, 4, 5, 6)
    assert spec.nodes[0].params == {"filters": 96, "kernel": 7, "stride": 2}
    assert spec.nodes[5].params == {"filters": 32, "kernel": 3, "stride": 1,
                                    "depth_multiplier": 1}


def test_enas_single_reduction_layer_from_enas_cpu():
    spec = enas.to_spec(wire_example("ENAS-cpu architecture"),
                        adapted_nn_config("ENAS-cpu nn_config"), frame=DIGITS)
    assert [(n.op, n.params) for n in spec.nodes] == [("pool", {"pool_type": "avg", "size": 3})]


@pytest.mark.parametrize(
    ("architecture", "nn_config", "message"),
    [
        ("[[27], [29, 0", None, "--architecture: not a valid Katib value"),
        ("[[27], [29]]", None, "layer 2 needs 1 operation id and 1 skip bits"),
        ("[[27], [29, 2]]", None, "skip bits of layer 2 must be 0 or 1"),
        ("[[27], [29, 0]]", None, "num_layers is 8 but --architecture has 2 layers"),
        ("[[5]]", "{'num_layers': 1, 'input_sizes': [8, 8, 1], 'output_sizes': [10], "
         "'embedding': {'5': {'opt_id': 5, 'opt_type': 'dilated_convolution', "
         "'opt_params': {'filter_size': '3'}}}}", "unknown opt_type 'dilated_convolution'"),
        ("[[5]]", "{'num_layers': 1, 'input_sizes': [8, 8, 1], 'output_sizes': [10], "
         "'embedding': {'5': {'opt_id': 5, 'opt_type': 'convolution', "
         "'opt_params': {'filter_size': 'big'}}}}", "filter_size: expected an integer"),
        ("[[5]]", "{'num_layers': 1, 'input_sizes': [8, 8, 1], 'output_sizes': [10], "
         "'embedding': {'5': {'opt_id': 5, 'opt_type': 'convolution', "
         "'opt_params': {'dilation': '2'}}}}", "unsupported opt_params dilation"),
        ("[[7]]", "{'num_layers': 1, 'input_sizes': [8, 8, 1], 'output_sizes': [10], "
         "'embedding': {}}", "operation 7, absent from embedding"),
        ("[[105]]", "{'num_layers': 1, 'input_sizes': [32, 32, 3], 'output_sizes': [10], "
         "'embedding': {}}", "input_sizes [32, 32, 3] do not match the dataset's images [8, 8, 1]"),
    ],
)
def test_enas_rejects_malformed_input_with_a_reason(architecture, nn_config, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        enas.to_spec(architecture, nn_config or adapted_nn_config(), frame=DIGITS)


KATIB_GENOTYPE = ("Genotype(normal=[[('max_pooling_3x3',1),('max_pooling_3x3',0)]],"
                  "normal_concat=range(2,3),reduce=[[('max_pooling_3x3',0),"
                  "('max_pooling_3x3',1)]],reduce_concat=range(2,3))")
DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
            "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
            "reduce_concat=[2, 3, 4, 5])")


def test_genotype_katib_form_parses():
    parsed = genotype.parse_genotype('"' + KATIB_GENOTYPE + '"')
    assert parsed["normal"] == [[("max_pooling_3x3", 1), ("max_pooling_3x3", 0)]]
    assert parsed["normal_concat"] == [2]
    spec = genotype.to_spec(KATIB_GENOTYPE, num_layers=3, init_channels=4, stem_multiplier=1,
                            frame=DIGITS)
    pools = [n for n in spec.nodes if n.op == "pool"]
    # 3 cells × 2 pooling edges; reduction cells (1 and 2) pool their two inputs with stride 2.
    assert [p.params["stride"] for p in pools] == [1, 1, 2, 2, 2, 2]
    assert sum(n.op == "factorized_reduce" for n in spec.nodes) == 1  # cell 2 after reduction


def test_genotype_darts_flat_form_and_aliases():
    parsed = genotype.parse_genotype(DARTS_V2)
    assert len(parsed["normal"]) == 4
    assert parsed["normal"][3] == [("skip_connection", 0), ("dilated_convolution_3x3", 2)]
    spec = genotype.to_spec(DARTS_V2, num_layers=2, init_channels=4, stem_multiplier=2,
                            frame=DIGITS)
    dilated = [n for n in spec.nodes if n.params.get("dilation") == 2]
    assert len(dilated) == 1  # normal cell 0 only: with 2 layers, cell 1 is a reduction cell


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Genotype(normal=[[('conv_9x9', 0), ('max_pooling_3x3', 1)]], normal_concat=range(2,3),"
         " reduce=[[('max_pooling_3x3', 0), ('max_pooling_3x3', 1)]], reduce_concat=range(2,3))",
         "unknown primitive 'conv_9x9'"),
        ("Genotype(normal=[[('none', 0), ('max_pooling_3x3', 1)]], normal_concat=range(2,3),"
         " reduce=[[('max_pooling_3x3', 0), ('max_pooling_3x3', 1)]], reduce_concat=range(2,3))",
         "'none' cannot be an edge"),
        ("Genotype(normal=[[('max_pooling_3x3', 5), ('max_pooling_3x3', 1)]], "
         "normal_concat=range(2,3), reduce=[[('max_pooling_3x3', 0)]], reduce_concat=range(2,3))",
         "input 5 must be a previous state"),
        ("__import__('os').system('true')", "cannot parse"),
        ("Genotype(normal=[[('max_pooling_3x3', 0)]])", "missing field"),
    ],
)
def test_genotype_rejects_bad_input(text, message):
    with pytest.raises(InputError, match=message):
        genotype.to_spec(text, num_layers=1, init_channels=4, stem_multiplier=1, frame=DIGITS)


def test_hyperparameter_blocks():
    spec = hyperparams.to_spec(num_blocks=3, filters=[8, 16, 32], kernel_sizes=[3, 5, 7],
                               poolings=["max", "none", "avg"], batch_norm=False, frame=DIGITS)
    assert [(n.op, n.params.get("kernel"), n.params.get("pool_type")) for n in spec.nodes] == [
        ("conv", 3, None), ("pool", None, "max"), ("conv", 5, None), ("conv", 7, None),
        ("pool", None, "avg")]
    assert all(n.inputs == (i,) for i, n in enumerate(spec.nodes))
    with pytest.raises(InputError, match="kernel size must be one of"):
        hyperparams.to_spec(num_blocks=1, filters=[8], kernel_sizes=[4], poolings=["max"],
                            batch_norm=True, frame=DIGITS)


def test_spec_round_trips_through_json():
    spec = genotype.to_spec(DARTS_V2, num_layers=3, init_channels=4, stem_multiplier=1,
                            frame=DIGITS)
    again = CandidateSpec.from_dict(json.loads(spec.to_json()))
    assert again == spec
    assert again.candidate_id == spec.candidate_id


def test_spec_validation_names_the_node():
    with pytest.raises(InputError, match=r"node 1 \(conv\): missing parameter\(s\) kernel"):
        CandidateSpec.from_dict({"input_shape": [8, 8, 1], "num_classes": 10,
                                 "nodes": [{"op": "conv", "inputs": [0],
                                            "params": {"filters": 4}}]})
    with pytest.raises(InputError, match="inputs \\[1\\] must be earlier nodes"):
        CandidateSpec.from_dict({"input_shape": [8, 8, 1], "num_classes": 10,
                                 "nodes": [{"op": "identity", "inputs": [1]}]})
