import json

import numpy as np
import pytest

from oneshot_nas.errors import ArchitectureError, UserError
from oneshot_nas.space import (PRESETS, Architecture, SearchSpace, get_space, load_architecture,
                               mid_channels, save_architecture, se_channels)
from tests.conftest import ROOT

ONESHOT_BLOCKS = [0, 0, 3, 1, 1, 1, 0, 0, 2, 0, 2, 1, 1, 0, 2, 0, 2, 1, 3, 2]
ONESHOT_CHANNELS = [6, 5, 3, 5, 2, 6, 3, 4, 2, 5, 7, 5, 4, 6, 7, 4, 4, 5, 4, 3]


def random_arch(space, rng):
    space = get_space(space)
    blocks = rng.integers(0, space.num_blocks, space.num_positions).tolist()
    channels = rng.integers(0, space.num_scales, space.num_positions).tolist()
    more = {g.name: rng.integers(0, g.size, space.num_positions).tolist() for g in space.gene_groups[2:]}
    return Architecture(space, blocks, channels, **more)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_topology(name):
    space = get_space(name)
    pos = space.positions
    assert space.stage_repeats == ((1, 1, 1, 1) if name.startswith("tiny4") else (4, 4, 8, 4))
    assert len(pos) == sum(space.stage_repeats)
    firsts = np.cumsum((0,) + space.stage_repeats[:-1]).tolist()    # the first block of a stage halves
    assert [p.stride for p in pos] == [2 if i in firsts else 1 for i in range(len(pos))]
    for p in pos:
        assert p.c_out == space.stage_channels[p.stage]
        if p.stride == 2:
            assert (p.main_in, p.main_out) == (p.c_in, p.c_out - p.c_in)
        else:
            assert p.c_in == p.c_out and p.main_in == p.main_out == p.c_out // 2
        assert p.act == ("relu" if p.stage == 0 or not space.se else "hard_swish")
        assert p.se == (space.se_search or (space.se and p.stage >= 2))   # (SE may sit there)
    assert space.final_size == -(-space.input_size // 32)


def test_presets_match_the_papers():
    one, plus = get_space("oneshot"), get_space("oneshot+")
    assert one.stage_channels == (64, 160, 320, 640) and one.first_conv == 16 and one.last_conv == 1024
    assert one.blocks == ("SNB-3", "SNB-5", "SNB-7", "SXB-3")
    assert one.channel_scales == (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
    assert (one.se, one.last_block, one.dropout, one.num_classes) == (False, "original", 0.1, 1000)
    assert (plus.se, plus.last_block, plus.dropout) == (True, "mobilenetv3", 0.2)
    assert get_space("tiny").input_size == 32


def test_mid_rule_is_exact_decimal():
    # 0.6 as a float is 0.59999...; the rule must still give int(80 * 0.6) == 48 everywhere
    assert mid_channels(160, 0.6) == 48
    assert mid_channels(64, 0.2) == 6 and mid_channels(640, 2.0) == 640
    space = get_space("oneshot")
    assert space.mid(4, 2) == 48 and space.max_mid(19) == 640
    assert se_channels(48) == 16 and se_channels(320) == 80 and se_channels(16) == 8


@pytest.mark.parametrize("name", list(PRESETS))
def test_architecture_round_trips(name, rng, tmp_path):
    for _ in range(20):
        arch = random_arch(name, rng)
        assert Architecture.from_str(arch.to_str()) == arch
        assert Architecture.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
        assert hash(Architecture.from_str(str(arch))) == hash(arch)
    path = save_architecture(tmp_path / "a.json", arch, record={"top1": 0.5})
    loaded, record = load_architecture(path, with_record=True)
    assert loaded == arch and record == {"top1": 0.5}


def test_canonical_string_format():
    arch = Architecture("oneshot", ONESHOT_BLOCKS, ONESHOT_CHANNELS)
    assert str(arch) == "oneshot_B0031-1100-20211020-2132_C6535-2634-25754674-4543"
    assert "/" not in str(Architecture("oneshot+", ONESHOT_BLOCKS, ONESHOT_CHANNELS))


@pytest.mark.parametrize("file,space,blocks,channels", [
    ("oneshot.json", "oneshot", ONESHOT_BLOCKS, ONESHOT_CHANNELS),
    ("oneshot+.json", "oneshot+", ONESHOT_BLOCKS, ONESHOT_CHANNELS),
    ("oneshot-s+.json", "oneshot+", [0, 0, 0, 1, 0, 0, 1, 0, 3, 2, 0, 1, 2, 2, 1, 2, 0, 0, 2, 0],
     [8, 7, 6, 8, 5, 7, 3, 4, 2, 4, 2, 3, 4, 5, 6, 6, 3, 3, 4, 6]),
])
def test_shipped_models(file, space, blocks, channels):
    arch = load_architecture(ROOT / "models" / file)
    assert arch == Architecture(space, blocks, channels)


@pytest.mark.parametrize("make,message", [
    (lambda: Architecture("oneshot", [0] * 19, [0] * 20), "needs 20 block ids"),
    (lambda: Architecture("oneshot", [0] * 20, [0] * 21), "needs 20 channel ids"),
    (lambda: Architecture("oneshot", [4] + [0] * 19, [0] * 20), "block id 4 at position 0 is out of range"),
    (lambda: Architecture("oneshot", [0] * 20, [0] * 19 + [10]), "channel id 10 at position 19"),
    (lambda: Architecture("oneshot", [0.5] + [0] * 19, [0] * 20), "must be integers"),
    (lambda: Architecture("resnet", [0] * 20, [0] * 20), "unknown search space 'resnet'; choose one of"),
    (lambda: Architecture.from_str("oneshot_B0031"), "not an architecture string"),
    (lambda: Architecture.from_str("oneshot_B003-1100-20211020-2132_C6535-2634-25754674-4543"),
     "do not match the stages"),
    (lambda: SearchSpace("my_space"), "no '_'"),
    (lambda: SearchSpace("x", blocks=("SNB-3", "RES-3")), "unknown block choice 'RES-3'"),
    (lambda: SearchSpace("x", stage_channels=(64, 48, 320, 640)), "must widen"),
    (lambda: SearchSpace("x", last_block="fancy"), "last_block 'fancy' is unknown"),
    (lambda: SearchSpace("x", channel_scales=(0.4, 0.2)), "strictly increasing"),
])
def test_bad_architectures_say_what_is_wrong(make, message):
    with pytest.raises(ArchitectureError, match=message):
        make()


def test_bad_files_say_what_is_wrong(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_architecture(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_architecture(tmp_path / "bad.json")
    (tmp_path / "keys.json").write_text('{"space": "oneshot"}')
    with pytest.raises(UserError, match="needs the keys"):
        load_architecture(tmp_path / "keys.json")
    data = Architecture("oneshot", ONESHOT_BLOCKS, ONESHOT_CHANNELS).to_dict()
    data["blocks"][0] = 3
    (tmp_path / "mismatch.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="disagrees with its ids"):
        load_architecture(tmp_path / "mismatch.json")


def test_custom_space_round_trips_through_json(tmp_path):
    space = get_space("tiny").derive("tiny-relu", se=False, last_block="original")
    arch = random_arch(space, np.random.default_rng(1))
    loaded = load_architecture(save_architecture(tmp_path / "c.json", arch))
    assert loaded == arch and loaded.space.se is False
    assert Architecture.from_str(str(arch), space=space) == arch


# ----- the gene codec -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["oneshot", "oneshot+", "tiny"])
def test_genes_round_trip_and_keep_their_layout_in_the_space(name, rng):
    space = get_space(name)
    arch = random_arch(space, rng)
    genes = arch.genes
    assert len(genes) == space.num_genes == 2 * space.num_positions
    assert space.decode(genes) == arch and space.decode(np.array(genes)) == arch
    parts = space.split(genes)
    assert parts == {"blocks": arch.blocks, "channels": arch.channels}
    batch = np.array([genes, Architecture.largest(space).genes])
    assert space.split(batch)["channels"].shape == (2, space.num_positions)
    choices = space.gene_choices(channels=(space.num_scales - 1,))
    assert choices[:space.num_positions] == [space.num_blocks] * space.num_positions
    assert set(choices[space.num_positions:]) == {(space.num_scales - 1,)}
    frozen = space.gene_choices(blocks=list(arch.blocks))
    assert space.allowed_ids(frozen)["blocks"] == [(b,) for b in arch.blocks]
    with pytest.raises(ArchitectureError, match="unknown gene groups"):
        space.gene_choices(bits=(8,))
    with pytest.raises(ArchitectureError, match="not within"):
        space.gene_choices(channels=(space.num_scales,))


def test_an_architecture_can_be_given_as_its_string_or_a_json_with_only_it(tmp_path):
    arch = load_architecture(ROOT / "models" / "oneshot-s+.json")
    assert load_architecture(str(arch)) == arch
    path = tmp_path / "only-arch.json"
    path.write_text(json.dumps({"arch": str(arch)}))
    assert load_architecture(path) == arch
    with pytest.raises(UserError, match="does not exist; pass a models/.*json file .* or an architecture string"):
        load_architecture(tmp_path / "missing.json")


def test_an_architecture_moves_to_a_space_with_another_number_of_classes():
    arch = Architecture.largest("tiny")
    space = get_space("tiny").with_classes(100)
    assert space.name == "tiny-c100" and get_space("tiny").with_classes(10) is get_space("tiny")
    moved = arch.on(space)
    assert moved.space is space and moved.blocks == arch.blocks
    with pytest.raises(ArchitectureError, match="does not match"):
        arch.on("oneshot")
    with pytest.raises(ArchitectureError, match="at least 2 classes"):
        get_space("tiny").with_classes(1)


# ----- mixed-precision genes (docs/quantization.md) ---------------------------------------------------
QUANTIZED = [name for name in PRESETS if get_space(name).quantized]


def test_quantized_presets_are_the_tiny_spaces_with_bit_genes():
    assert QUANTIZED == ["tiny-q", "tiny4-q"]
    for name in QUANTIZED:
        space = get_space(name)
        assert space.bit_widths == (2, 3, 4, 8) and space.edge_bits == 8
        assert space.derive(name[:-2], bit_widths=()) == get_space(name[:-2])
        assert [g.name for g in space.gene_groups] == ["blocks", "channels", "wbits", "abits"]
    # a float space's dict, files and cache key do not mention the optional fields
    assert "bit_widths" not in get_space("tiny").to_dict() and "edge_bits" not in get_space("oneshot").to_dict()


@pytest.mark.parametrize("name", QUANTIZED)
def test_bit_genes_round_trip_through_the_codec_string_and_json(name, rng, tmp_path):
    space = get_space(name)
    n = space.num_positions
    for _ in range(20):
        arch = random_arch(space, rng)
        genes = arch.genes
        assert len(genes) == space.num_genes == 4 * n
        assert space.decode(genes) == arch and space.decode(np.array(genes)) == arch
        assert space.split(genes) == {"blocks": arch.blocks, "channels": arch.channels,
                                      "wbits": arch.wbits, "abits": arch.abits}
        assert Architecture.from_str(str(arch)) == arch
        assert Architecture.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
        assert "_W" in str(arch) and "_A" in str(arch)
    record = arch.to_dict()
    assert record["weight_bits"] == [space.bit_widths[i] for i in arch.wbits] == list(arch.weight_bits)
    assert record["activation_bits"] == list(arch.activation_bits)
    loaded = load_architecture(save_architecture(tmp_path / "q.json", arch))
    assert loaded == arch and load_architecture(str(arch)) == arch
    # the space's own bit genes are what a search may narrow, like any other group
    choices = space.gene_choices(wbits=(3,), abits=[(2, 3)] * n)
    assert choices[2 * n:3 * n] == [(3,)] * n and choices[3 * n:] == [(2, 3)] * n
    uniform = arch.replace(wbits=(1,) * n, abits=(1,) * n)
    assert uniform.weight_bits == uniform.activation_bits == (3,) * n and uniform.blocks == arch.blocks
    assert Architecture.largest(space).weight_bits == (8,) * n


def test_a_hand_written_quantized_string():
    arch = Architecture.from_str("tiny4-q_B0-1-2-3_C9-8-7-6_W0-1-2-3_A3-2-1-0")
    assert arch.weight_bits == (2, 3, 4, 8) and arch.activation_bits == (8, 4, 3, 2)
    assert arch.block_names == ("SNB-3", "SNB-5", "SNB-7", "SXB-3")


@pytest.mark.parametrize("make,message", [
    (lambda: Architecture("tiny4-q", [0] * 4, [0] * 4), "needs 4 weight bit-width ids"),
    (lambda: Architecture("tiny4-q", [0] * 4, [0] * 4, [0] * 4, [4, 0, 0, 0]),
     r"activation bit-width id 4 at position 0 is out of range: .* \(0=2, 1=3, 2=4, 3=8\)"),
    (lambda: Architecture("tiny4", [0] * 4, [0] * 4, wbits=[0] * 4), "has no wbits genes"),
    (lambda: Architecture.from_str("tiny4-q_B0-1-2-3_C9-8-7-6"), "has the parts B, C, W, A in this order"),
    (lambda: Architecture.from_str("tiny4_B0-1-2-3_C9-8-7-6_W0-0-0-0_A0-0-0-0"), "has the parts B, C in this order"),
    (lambda: Architecture.from_str("tiny4-q_B0-1-2-3_C9-8-7-6_A0-0-0-0_W0-0-0-0"), "in this order"),
    (lambda: Architecture.from_str("tiny4-q_B0-1-2-3_C9-8-7-6_W0-0-0_A0-0-0-0"), "do not match the stages"),
    (lambda: SearchSpace("x", bit_widths=(2, 5, 3)), "strictly increasing"),
    (lambda: SearchSpace("x", bit_widths=(1, 8)), "integers from 2 to 16"),
    (lambda: SearchSpace("x", bit_widths=(4, 8), edge_bits=20), "edge_bits must be"),
    (lambda: SearchSpace("x", edge_bits=4), "give bit_widths too"),
    (lambda: get_space("tiny4-q").gene_choices(wbits=(4,)), "not within 0..3"),
])
def test_bad_bit_genes_say_what_is_wrong(make, message):
    with pytest.raises(ArchitectureError, match=message):
        make()
