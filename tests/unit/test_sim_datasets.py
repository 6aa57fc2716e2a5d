"""Simulation datasets: the `synthetic:` URI kind, which virtual node trains on which entry of
`sim-datasets` (i mod N), a deployed node's refusal of generated data, and the shipped
run config of twelve Hub datasets parsed by the real settings parser."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from zk0 import validate
from zk0.config import ConfigError, FederationSettings
from zk0.data.synthetic import SyntheticDatasetConfig, synthetic_config
from zk0.data.uri import DatasetURIError, SyntheticSpec, parse_dataset_uri
from zk0.node import node_dataset_uri
from zk0.simulation import in_virtual_node, virtual_node_dataset_uri

REPO = Path(__file__).resolve().parents[2]
HUB_CONF = REPO / "conf" / "sim-so100-hub.toml"
UPSTREAM_CLIENTS = [
    "shaunkirby/record-test",
    "ethanCSL/direction_test",
    "gimarchetti/so101-winnie-us5",
    "olingoudey/so101_stationary_mug445",
    "sebastiandavidlee/chopsticksTable2Organizer",
    "giovipeg/record-test",
    "VoicAndrei/so100_cubes_three_cameras",
    "qm30631122/so101_grab_pen_20sec_50ep_SCB_102725_2",
    "wsi-dev/tictactoe",
    "KeisukeSato1024/so101_pp_green_box",
    "stanl1y/record_60_simple",
    "RickRain/Imperio",
]


def test_a_synthetic_uri_carries_its_options():
    uri = parse_dataset_uri(
        "synthetic:node-a?video=true&cameras=top+wrist+side&episodes=4&frames=12&seed=3", synthetic=True
    )
    assert uri.is_synthetic and not uri.is_local and uri.path is None
    assert uri.synthetic == SyntheticSpec(
        name="node-a", seed=3, episodes=4, frames=12, video=True, cameras=("top", "wrist", "side")
    )
    assert parse_dataset_uri("synthetic:plain", synthetic=True).synthetic == SyntheticSpec(name="plain")


def test_options_left_out_take_the_generators_defaults_and_the_seed_follows_the_name():
    default = SyntheticDatasetConfig()
    a = synthetic_config(SyntheticSpec(name="a"))
    assert (a.episodes, a.frames_per_episode, a.video, a.cameras) == (
        default.episodes,
        default.frames_per_episode,
        default.video,
        default.cameras,
    )
    assert a.seed != synthetic_config(SyntheticSpec(name="b")).seed  # two names, two datasets
    assert a == synthetic_config(SyntheticSpec(name="a"))  # and the same name, the same one
    custom = synthetic_config(parse_dataset_uri("synthetic:a?seed=5&video=1&cameras=front", synthetic=True).synthetic)
    assert (custom.seed, custom.video, custom.cameras) == (5, True, ("front",))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("synthetic:", "not a plain name"),
        ("synthetic:a/b", "not a plain name"),
        ("synthetic:a?colour=red", "option colour='red' is unknown"),
        ("synthetic:a?video=maybe", "option video='maybe' is unknown or malformed"),
        ("synthetic:a?cameras=Front+wrist", "option cameras="),
        ("synthetic:a?cameras=wrist+wrist", "camera names repeat"),
        ("synthetic:a?episodes=1", "episodes='1' should be a whole number >= 2"),
        ("synthetic:a?seed=-1", "seed='-1' should be a whole number >= 0"),
        ("synthetic:a?seed=1&seed=2", "each once"),
        ("synthetic:a?video", "one option=value"),
    ],
)
def test_a_malformed_synthetic_uri_names_the_problem_and_the_form(text, fragment):
    with pytest.raises(DatasetURIError) as err:
        parse_dataset_uri(text, synthetic=True)
    assert fragment in str(err.value)
    assert "synthetic:NAME" in str(err.value) or "whole number" in str(err.value) or "repeat" in str(err.value)


@pytest.mark.parametrize("uri", ["synthetic:x", "synthetic:x?video=true"])
def test_generated_data_is_refused_wherever_a_node_operator_names_a_dataset(uri):
    # The parser's default (zk0bot --dataset, the supernode role's checks) ...
    with pytest.raises(DatasetURIError, match=r"for simulation \(run config sim-datasets\).*zk0 dataset synth --out"):
        parse_dataset_uri(uri)
    assert validate.problems([["dataset_uri", "supernode_dataset_uri", uri]])[0].startswith("supernode_dataset_uri: ")
    # ... and the deployed node itself, whatever else its node config says.
    with pytest.raises(ConfigError, match=r"node config 'dataset-uri': .*generated data"):
        node_dataset_uri({"dataset-uri": uri, "partition-id": 0, "num-partitions": 2})


def test_a_deployed_node_without_a_dataset_uri_is_refused_not_given_synthetic_data():
    # Flower's deployment examples pass partition-id too; that never makes a node a virtual one.
    for config in ({}, {"partition-id": 0, "num-partitions": 2}):
        with pytest.raises(ConfigError, match="node config lacks 'dataset-uri'"):
            node_dataset_uri(config)
    assert node_dataset_uri({"dataset-uri": "hf:me/so101@v1"}) == "hf:me/so101@v1"
    assert node_dataset_uri({"dataset-uri": "local:/data/dataset"}) == "local:/data/dataset"


def test_this_process_is_no_virtual_node_even_with_ray_imported():
    import ray  # what the simulation engine imports; without its actor, a plain process

    assert not ray.is_initialized() and in_virtual_node() is False


def test_virtual_node_i_trains_on_entry_i_mod_n():
    settings = FederationSettings(sim_datasets=" local:/data/a ,\n hf:me/b,synthetic:c ,")
    assert settings.sim_dataset_uris == ("local:/data/a", "hf:me/b", "synthetic:c")
    picks = [virtual_node_dataset_uri({"partition-id": i, "num-partitions": 7}, settings) for i in range(7)]
    assert picks == ["local:/data/a", "hf:me/b", "synthetic:c"] * 2 + ["local:/data/a"]
    # Fewer virtual nodes than entries leave the tail unused; a string partition id (older
    # Flower) is read as its number; a missing or negative one is refused.
    assert virtual_node_dataset_uri({"partition-id": "1"}, settings) == "hf:me/b"
    for bad in ({}, {"partition-id": -1}, {"partition-id": "x"}):
        with pytest.raises(ConfigError, match="partition-id"):
            virtual_node_dataset_uri(bad, settings)


def test_the_default_gives_each_of_four_virtual_nodes_its_own_synthetic_dataset():
    uris = FederationSettings().sim_dataset_uris
    assert len(uris) == len(set(uris)) == 4
    specs = [parse_dataset_uri(u, synthetic=True).synthetic for u in uris]
    assert all(s is not None for s in specs)
    assert len({synthetic_config(s).seed for s in specs if s is not None}) == 4


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (" , ", "'sim-datasets' is empty"),
        ("synthetic:a,s3://bucket/b", "'sim-datasets': dataset URI 's3://bucket/b' has unknown scheme"),
        ("hf:owner", "'sim-datasets': dataset URI 'hf:owner'"),
    ],
)
def test_a_bad_sim_datasets_list_is_refused_when_the_run_starts(value, message):
    with pytest.raises(ConfigError, match=message):
        FederationSettings.from_run_config({"sim-datasets": value})


def test_the_hub_run_config_lists_upstreams_twelve_datasets_and_its_eval_set():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    overrides = tomllib.loads(HUB_CONF.read_text())
    settings = FederationSettings.from_run_config({**pyproject, **overrides})  # what flwr run sends
    assert settings.sim_dataset_uris == tuple(f"hf:{repo}" for repo in UPSTREAM_CLIENTS)
    assert all(parse_dataset_uri(u).repo_id in UPSTREAM_CLIENTS for u in settings.sim_dataset_uris)
    assert settings.eval_datasets == ("hf:Hupy440/Two_Cubes_and_Two_Buckets_v2",)
    assert [settings.sim_dataset_for(i) for i in (0, 11, 12)] == [
        "hf:shaunkirby/record-test",
        "hf:RickRain/Imperio",
        "hf:shaunkirby/record-test",
    ]
    assert settings.model == "lerobot/smolvla_base"
